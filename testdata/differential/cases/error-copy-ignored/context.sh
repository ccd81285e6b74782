echo h > hidden.txt && printf 'hidden.txt\n' > .dockerignore
