mkdir -p src/a && echo a > src/a/f && echo b > src/b
tar --numeric-owner --owner=1234 --group=5678 -C src -cf owned.tar .
rm -rf src
