mkdir -p tree/real && echo r > tree/real/target.txt && echo a > a.txt
ln -s target.txt tree/real/rel-link && ln -s ../../a.txt tree/real/up-link
