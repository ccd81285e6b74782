mkdir -p one/s two/s && echo 1 > one/s/a && echo 2 > two/s/b && echo o > one/same && echo t > two/same
