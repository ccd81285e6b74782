mkdir -p tree/d && echo f > tree/d/f
ln -s d/f tree/rel && ln -s /etc/passwd tree/abs && ln -s missing tree/dangling && ln -s d tree/dirlink
