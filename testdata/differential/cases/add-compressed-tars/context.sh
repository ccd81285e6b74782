mkdir -p src/d && echo f > src/d/f
tar --numeric-owner --owner=0 --group=0 -C src -cf t.tar .
bzip2 -c t.tar > t.tar.bz2 && xz -c t.tar > t.tar.xz && rm -rf t.tar src
