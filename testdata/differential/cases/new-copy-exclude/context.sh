mkdir -p app/tmp app/src && echo m > app/main && echo l > app/debug.log && echo t > app/tmp/t && echo s > app/src/s
mkdir -p kept/src && cp app/main kept/ && cp app/src/s kept/src/
