mkdir -p tree/private tree/open
echo s > tree/suid && chmod 4755 tree/suid
echo g > tree/sgid && chmod 2755 tree/sgid
echo x > tree/exec && chmod 0755 tree/exec
echo r > tree/readonly && chmod 0444 tree/readonly
echo p > tree/private/p && chmod 0600 tree/private/p && chmod 0700 tree/private
chmod 1777 tree/open
