mkdir -p src && echo m > src/main && echo r > README && printf 'README\n' > .dockerignore
