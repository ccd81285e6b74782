mkdir hl && echo same > hl/a && ln hl/a hl/b && echo other > hl/c
