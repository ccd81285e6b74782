mkdir -p a/b && echo 1 > a/b/c && echo 2 > top
