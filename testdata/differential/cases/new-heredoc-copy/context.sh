echo welcome > motd && chmod 0664 motd
