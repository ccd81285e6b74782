mkdir -p docs/keep docs/drop && echo k > docs/keep/k && echo d > docs/drop/d && echo r > docs/README
printf '%s\n' 'docs' '!docs/keep' 'Dockerfile' '.dockerignore' > .dockerignore
