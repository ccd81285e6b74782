mkdir -p src/d src/empty && echo f > src/d/f && chmod 0600 src/d/f && echo x > src/x && chmod 4755 src/x
ln -s d/f src/link && ln src/x src/x-hard && mkdir -p src/owned && echo o > src/owned/o
tar --numeric-owner --owner=0 --group=0 -C src -cf plain.tar .
gzip -n -c plain.tar > gz.tar.gz
rm -rf src
