echo a > a.txt && echo b > b.txt && echo b > secret.txt
printf 'secret.txt\n' > .dockerignore
