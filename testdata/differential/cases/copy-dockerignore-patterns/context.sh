mkdir -p keep skip/deep logs nested/a/b
echo k > keep/k && echo s > skip/deep/s && echo l > logs/a.log && echo i > logs/important.log
echo t > top.tmp && echo n > nested/a/b/x.tmp && echo y > nested/a/b/y.txt
printf '%s\n' 'skip' '*.tmp' '**/*.tmp' 'logs/*.log' '!logs/important.log' '# comment' '' > .dockerignore
