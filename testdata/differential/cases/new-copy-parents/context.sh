mkdir -p a/b x tree/a/b tree/x && echo c > a/b/c.txt && echo y > x/y.txt && echo other > a/other
cp a/b/c.txt tree/a/b/ && cp x/y.txt tree/x/
