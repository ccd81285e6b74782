mkdir hidden && echo h > hidden/h && ln -s hidden to-hidden && printf 'hidden\n' > .dockerignore
