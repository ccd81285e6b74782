#!/usr/bin/env bash
# Remakes cases/*/expected.txt with docker 20.10 + BuildKit (README.md says how the listing is
# made and normalised). Usage: regenerate.sh [CASE...]   (default: every case)
# Environment: DOCKER (default /usr/bin/docker), DOCKER_HOST (default the bench's dockerd),
# CARGO (default "cargo"; the listing is made by the test suite's own normaliser).
set -euo pipefail
export LC_ALL=C
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
CARGO=${CARGO:-cargo}
export DOCKER_HOST=${DOCKER_HOST:-unix:///tmp/peerbench/docker.sock} DOCKER_BUILDKIT=1
# The harness's busybox under a name of its own, so no other image called busybox is used.
BASE=kiln-differential/busybox:latest

work=$(mktemp -d /tmp/kiln-differential.XXXXXX)
built=()
cleanup() {
  for image in "${built[@]}"; do "$DOCKER" rmi -f "$image" >/dev/null 2>&1 || true; done
  "$DOCKER" rmi -f "$BASE" >/dev/null 2>&1 || true
  "$DOCKER" builder prune -f >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash "$REPO/testdata/busybox/make-image.sh" "$work/busybox" >/dev/null
skopeo copy -q "oci:$work/busybox/oci:latest" "docker-archive:$work/busybox.tar:$BASE"
"$DOCKER" load -q -i "$work/busybox.tar" >/dev/null

if [ $# -gt 0 ]; then cases=("$@"); else
  mapfile -t cases < <(ls "$HERE/cases")
fi
mkdir -p "$work/archives"
for name in "${cases[@]}"; do
  case_dir=$HERE/cases/$name
  ctx=$work/ctx/$name
  mkdir -p "$ctx"
  [ -d "$case_dir/context" ] && cp -a "$case_dir/context/." "$ctx/"
  [ -f "$case_dir/context.sh" ] && (cd "$ctx" && sh -eu "$case_dir/context.sh")
  dockerfile=$case_dir/Dockerfile
  [ -f "$case_dir/Dockerfile.docker" ] && dockerfile=$case_dir/Dockerfile.docker
  # `busybox` as an image (FROM, COPY --from) is the harness's image.
  sed -E 's#^([[:space:]]*FROM[[:space:]]+(--platform=[^[:space:]]+[[:space:]]+)?)busybox\b#\1'"$BASE"'#I; s#--from=busybox\b#--from='"$BASE"'#; s#^([[:space:]]*ARG[[:space:]]+[A-Za-z_]+=)busybox\b#\1'"$BASE"'#I' \
    "$dockerfile" > "$work/$name.Dockerfile"
  flags=()
  [ -f "$case_dir/args" ] && mapfile -t flags < "$case_dir/args"
  image=kiln-differential/$name:latest
  if "$DOCKER" build --network none --progress plain -f "$work/$name.Dockerfile" -t "$image" \
      "${flags[@]}" "$ctx" > "$work/$name.log" 2>&1; then
    built+=("$image")
    "$DOCKER" save -o "$work/archives/$name.tar" "$image"
    echo "built  $name"
  else
    touch "$work/archives/$name.failed"
    echo "fails  $name: $(grep -m1 -E '^(ERROR|error|failed)|ERROR:' "$work/$name.log" || tail -n1 "$work/$name.log")"
  fi
done

cd "$REPO"
KILN_DIFFERENTIAL_ARCHIVES=$work/archives $CARGO test --locked -q --test it \
  differential::expected_from_docker_archives -- --ignored --exact
