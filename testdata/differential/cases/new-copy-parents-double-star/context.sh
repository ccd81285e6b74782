mkdir -p src/x/y && echo a > src/a.txt && echo b > src/x/b.txt && echo c > src/x/y/c.txt && echo n > src/x/n.log
mkdir -p tree/src/x/y && cp src/a.txt tree/src/ && cp src/x/b.txt tree/src/x/ && cp src/x/y/c.txt tree/src/x/y/
