echo target > real.txt && ln -s real.txt link-file
