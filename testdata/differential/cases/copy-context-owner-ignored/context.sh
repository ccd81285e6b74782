mkdir owned && echo o > owned/f && chown -R 1234:5678 owned
