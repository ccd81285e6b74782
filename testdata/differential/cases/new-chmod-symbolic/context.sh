mkdir -p dir/s && echo f > dir/s/f && mkdir -p dir755/s && echo f > dir755/s/f && chmod -R 0755 dir755
