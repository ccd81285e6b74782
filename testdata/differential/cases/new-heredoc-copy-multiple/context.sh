echo one > first.conf && echo two > second.conf && chmod 0664 first.conf second.conf
