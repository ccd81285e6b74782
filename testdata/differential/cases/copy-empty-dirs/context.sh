mkdir -p tree/empty tree/nested/empty2 && chmod 0750 tree/nested/empty2 && echo f > tree/f
