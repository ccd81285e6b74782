mkdir -p src && echo in > src/in
tar --numeric-owner --owner=0 --group=0 -C src -cf t.tar .
rm -rf src
