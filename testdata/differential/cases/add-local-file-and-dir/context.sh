echo a > a.txt && mkdir -p dir/s && echo s > dir/s/f
