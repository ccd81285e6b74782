#!/usr/bin/env bash
# Push and pull throughput of kiln against skopeo, on a loopback docker-registry.
#
# Makes a ~300 MiB image (the busybox test base plus random gzip layers), then in one run:
#   push: skopeo copy oci:… docker://…   vs   kiln load + kiln push
#   pull: skopeo copy docker://… oci:…   vs   kiln pull (fresh root; includes unpacking)
# and prints MB/s (1 MB = 10^6 bytes of blobs moved), best of RUNS (default 3), and the
# kiln/skopeo ratios.
#
# Usage: benches/registry-throughput.sh            (builds kiln in release mode)
#        KILN=/path/to/kiln LAYERS=3 LAYER_MIB=100 RUNS=3 benches/registry-throughput.sh
# Needs: docker-registry, skopeo, busybox-static, gzip, cargo.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

LAYERS=${LAYERS:-3}
LAYER_MIB=${LAYER_MIB:-100}
if [ -z "${KILN:-}" ]; then
  cargo build --release --quiet
  KILN=${CARGO_TARGET_DIR:-target}/release/kiln
fi
for tool in docker-registry skopeo gzip; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
registry_pid=
cleanup() {
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# --- registry (a fresh one per run, so no run can mount what an earlier one pushed) --------
registry_pid=
start_registry() {
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  reg=127.0.0.1:$port
  rm -rf "$work/registry"
  cat > "$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: $reg
EOF
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://$reg/v2/" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "registry did not start" >&2; exit 1
}
stop_registry() {
  kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true
  registry_pid=
}

# --- image ----------------------------------------------------------------------------------
testdata/busybox/make-image.sh "$work/busybox" >/dev/null
oci=$work/busybox/oci
blobs=$oci/blobs/sha256
manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$oci/index.json")
echo "making $LAYERS random layers of $LAYER_MIB MiB…" >&2
layer_args=()
for i in $(seq "$LAYERS"); do
  mkdir -p "$work/layer$i"
  head -c "$((LAYER_MIB << 20))" /dev/urandom > "$work/layer$i/data$i.bin"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layer$i" -cf "$work/layer$i.tar" .
  diff_id=$(sha256sum "$work/layer$i.tar" | cut -d' ' -f1)
  gzip -1 -n -c "$work/layer$i.tar" > "$work/layer$i.tar.gz"
  digest=$(sha256sum "$work/layer$i.tar.gz" | cut -d' ' -f1)
  size=$(stat -c %s "$work/layer$i.tar.gz")
  mv "$work/layer$i.tar.gz" "$blobs/$digest"
  rm -rf "$work/layer$i" "$work/layer$i.tar"
  layer_args+=("$diff_id:$digest:$size")
done
python3 - "$oci" "$manifest" "${layer_args[@]}" <<'PY'
import hashlib, json, os, sys
oci, manifest_hex, layers = sys.argv[1], sys.argv[2], sys.argv[3:]
blobs = os.path.join(oci, "blobs", "sha256")
def put(obj):
    data = json.dumps(obj, separators=(",", ":")).encode()
    digest = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, digest), "wb").write(data)
    return "sha256:" + digest, len(data)
manifest = json.load(open(os.path.join(blobs, manifest_hex)))
config = json.load(open(os.path.join(blobs, manifest["config"]["digest"][7:])))
for spec in layers:
    diff_id, digest, size = spec.split(":")
    config["rootfs"]["diff_ids"].append("sha256:" + diff_id)
    config["history"].append({"created_by": "random layer"})
    manifest["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": "sha256:" + digest, "size": int(size)})
manifest["config"]["digest"], manifest["config"]["size"] = put(config)
digest, size = put(manifest)
json.dump({"schemaVersion": 2, "manifests": [{"mediaType": manifest["mediaType"], "digest": digest,
          "size": size, "annotations": {"org.opencontainers.image.ref.name": "latest"}}]},
          open(os.path.join(oci, "index.json"), "w"))
PY
total=$(du -sb "$blobs" | cut -f1)
echo "image: $(awk -v b="$total" 'BEGIN{printf "%.1f MB", b/1e6}') of blobs in $((LAYERS + 1)) layers" >&2

now() { date +%s.%N; }
rate() { awk -v b="$total" -v s="$1" 'BEGIN{printf "%.1f", b/1e6/s}'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", b-a}'; }

# Keep skopeo's per-user state out of the way (its blob-info cache could turn uploads into
# mounts; each run also gets a fresh registry on a new port for the same reason).
export XDG_DATA_HOME=$work/xdg HOME=$work/home
mkdir -p "$XDG_DATA_HOME" "$HOME"

skopeo copy -q "oci:$oci:latest" "oci-archive:$work/image.tar:bench:1"
"$KILN" --root "$work/kiln-src" load -q -i "$work/image.tar" >/dev/null
rm -f "$work/image.tar"

# Best of RUNS: the machine is shared, so the minimum is the least disturbed measurement.
best() { awk -v a="$1" -v b="$2" 'BEGIN{print (a == "" || b < a) ? b : a}'; }
skopeo_push= kiln_push= skopeo_pull= kiln_pull=
for run in $(seq "${RUNS:-3}"); do
  start_registry
  rm -rf "$work/kiln-pull" "$work/skopeo-pull" "$work/kiln-src/image-v1"
  "$KILN" --root "$work/kiln-src" tag bench:1 "$reg/kiln-push:1"
  sync
  t0=$(now)
  skopeo copy -q --dest-tls-verify=false "oci:$oci:latest" "docker://$reg/skopeo-push:1"
  t1=$(now); skopeo_push=$(best "$skopeo_push" "$(secs "$t0" "$t1")")
  sync
  t0=$(now)
  "$KILN" --root "$work/kiln-src" push -q "$reg/kiln-push:1" >/dev/null
  t1=$(now); kiln_push=$(best "$kiln_push" "$(secs "$t0" "$t1")")
  sync
  t0=$(now)
  skopeo copy -q --src-tls-verify=false "docker://$reg/skopeo-push:1" "oci:$work/skopeo-pull:latest"
  t1=$(now); skopeo_pull=$(best "$skopeo_pull" "$(secs "$t0" "$t1")")
  sync
  t0=$(now)
  "$KILN" --root "$work/kiln-pull" pull -q "$reg/kiln-push:1" >/dev/null
  t1=$(now); kiln_pull=$(best "$kiln_pull" "$(secs "$t0" "$t1")")
  "$KILN" --root "$work/kiln-src" image rm "$reg/kiln-push:1" >/dev/null
  stop_registry
  echo "run $run: push skopeo/kiln $skopeo_push/$kiln_push s, pull $skopeo_pull/$kiln_pull s (best so far)" >&2
done

printf '%-6s %-8s %9s %9s\n' op tool seconds MB/s
printf '%-6s %-8s %9s %9s\n' push skopeo "$skopeo_push" "$(rate "$skopeo_push")"
printf '%-6s %-8s %9s %9s\n' push kiln "$kiln_push" "$(rate "$kiln_push")"
printf '%-6s %-8s %9s %9s\n' pull skopeo "$skopeo_pull" "$(rate "$skopeo_pull")"
printf '%-6s %-8s %9s %9s\n' pull kiln "$kiln_pull" "$(rate "$kiln_pull")"
awk -v sp="$skopeo_push" -v kp="$kiln_push" -v sl="$skopeo_pull" -v kl="$kiln_pull" \
  'BEGIN{printf "kiln/skopeo throughput: push %.2fx, pull %.2fx (kiln pull also unpacks)\n", sp/kp, sl/kl}'
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
