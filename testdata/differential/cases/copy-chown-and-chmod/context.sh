mkdir -p dir/s && echo f > dir/s/f
