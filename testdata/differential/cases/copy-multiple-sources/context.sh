echo a > a.txt && echo b > b.txt && mkdir dir && echo c > dir/c.txt
