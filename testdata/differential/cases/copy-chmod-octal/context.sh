echo a > a.txt && mkdir -p dir/sub && echo b > dir/sub/b
