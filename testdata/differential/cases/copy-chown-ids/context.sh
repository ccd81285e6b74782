mkdir -p dir/sub && echo 1 > dir/one && echo 2 > dir/sub/two && echo a > a.txt
