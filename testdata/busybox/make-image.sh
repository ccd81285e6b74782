#!/usr/bin/env bash
# Makes the test suite's base image from Debian's busybox-static package, offline and
# bit-reproducibly (the digests depend only on the package version):
#   DEST/rootfs/       the root filesystem: /bin/busybox, one symlink per applet,
#                      /etc/{passwd,group,hosts,resolv.conf}, /tmp (1777), /root, ...
#   DEST/layer.tar     that tree as one layer (sorted, mtime 0, numeric owner 0:0)
#   DEST/oci/          an OCI image layout holding the image, tag "latest"
#   DEST/digests       diff_id, layer, config and manifest digests
# Usage: make-image.sh DEST [DEB]     (needs busybox-static, GNU tar, gzip, coreutils)
# With DEB, a busybox-static package of another architecture (`apt-get download
# busybox-static:arm64`), the image is made from its /bin/busybox for that architecture;
# listing its applets runs it, through binfmt_misc emulation (kiln system binfmt --install).
set -euo pipefail
export LC_ALL=C TZ=UTC
umask 022
DEST=${1:?usage: make-image.sh DEST [BUSYBOX_STATIC_DEB]}
DEB=${2:-}

work=$(mktemp -d "${DEST%/}.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT
architecture=amd64
platform_extra=
if [ -n "$DEB" ]; then
  dpkg-deb -x "$DEB" "$work/deb"
  BUSYBOX=$work/deb/bin/busybox
  # Debian's architecture names to OCI's.
  debian_arch=$(dpkg-deb -f "$DEB" Architecture)
  case "$debian_arch" in
    amd64|arm64|s390x|riscv64) architecture=$debian_arch ;;
    i386) architecture=386 ;;
    armhf) architecture=arm platform_extra=',"variant":"v7"' ;;
    ppc64el) architecture=ppc64le ;;
    mips64el) architecture=mips64le ;;
    *) echo "$DEB: no OCI architecture for Debian's $debian_arch" >&2; exit 1 ;;
  esac
  [ -x "$BUSYBOX" ] || { echo "$DEB holds no /bin/busybox (is it busybox-static?)" >&2; exit 1; }
  "$BUSYBOX" --list-full >/dev/null 2>&1 || {
    echo "cannot run the $debian_arch $BUSYBOX: register its emulator (kiln system binfmt --install)" >&2
    exit 1
  }
else
  BUSYBOX=/bin/busybox
  [ -x "$BUSYBOX" ] || { echo "missing $BUSYBOX: apt-get install busybox-static" >&2; exit 1; }
  "$BUSYBOX" --list-full >/dev/null 2>&1 || { echo "$BUSYBOX is not busybox-static" >&2; exit 1; }
fi

root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,home,var,tmp,proc,sys,dev,run}
chmod 1777 "$root/tmp"
chmod 700 "$root/root"
install -m 0755 "$BUSYBOX" "$root/bin/busybox"
"$BUSYBOX" --list-full | while read -r applet; do
  case "$applet" in bin/busybox|linuxrc|"") continue ;; esac
  mkdir -p "$root/$(dirname "$applet")"
  ln -sf /bin/busybox "$root/$applet"
done
cat > "$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/home:/bin/false
PASSWD
cat > "$root/etc/group" <<'GROUP'
root:x:0:
daemon:x:1:
app:x:1000:
staff:x:50:app
nogroup:x:65534:
GROUP
printf '127.0.0.1\tlocalhost\n' > "$root/etc/hosts"
: > "$root/etc/resolv.conf"
chmod 0644 "$root"/etc/{passwd,group,hosts,resolv.conf}
find "$root" -exec touch -h -d @0 {} +
rm -rf "$work/deb"

oci=$work/oci
mkdir -p "$oci/blobs/sha256"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$root" -cf "$work/layer.tar" .
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -6 -c "$work/layer.tar" > "$work/layer.tar.gz"
layer=$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)
layer_size=$(stat -c %s "$work/layer.tar.gz")
mv "$work/layer.tar.gz" "$oci/blobs/sha256/$layer"

# Write a JSON blob, print "digest size".
blob() {
  printf '%s' "$1" > "$work/blob"
  local digest size
  digest=$(sha256sum "$work/blob" | cut -d' ' -f1)
  size=$(stat -c %s "$work/blob")
  mv "$work/blob" "$oci/blobs/sha256/$digest"
  echo "$digest $size"
}
config_json='{"architecture":"'$architecture'","config":{"Cmd":["sh"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/"},"created":"1970-01-01T00:00:00Z","history":[{"created":"1970-01-01T00:00:00Z","created_by":"testdata/busybox/make-image.sh: busybox-static rootfs"}],"os":"linux","rootfs":{"diff_ids":["sha256:'$diff_id'"],"type":"layers"}'$platform_extra'}'
read -r config config_size < <(blob "$config_json")
manifest_json='{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:'$config'","size":'$config_size'},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:'$layer'","size":'$layer_size'}]}'
read -r manifest manifest_size < <(blob "$manifest_json")
printf '{"imageLayoutVersion":"1.0.0"}' > "$oci/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest" "$manifest_size" > "$oci/index.json"
printf 'diff_id sha256:%s\nlayer sha256:%s\nconfig sha256:%s\nmanifest sha256:%s\n' \
  "$diff_id" "$layer" "$config" "$manifest" > "$work/digests"

rm -rf "$DEST"
mv "$work" "$DEST"
trap - EXIT
cat "$DEST/digests"
