mkdir data && echo from-context > data/f
