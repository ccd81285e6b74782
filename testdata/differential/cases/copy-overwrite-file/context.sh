printf 'root:x:0:0:root:/root:/bin/sh\n' > passwd && echo 'not busybox' > ls
