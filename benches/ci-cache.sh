#!/usr/bin/env bash
# CI-runner benchmark: a registry cache shared by fresh runners, kiln against docker+BuildKit,
# side by side in one run, on the shared bench registry (127.0.0.1:5000, see
# /work/shared/bench/README.md; setup-peers.sh starts it and dockerd).
#
# Per case, per run, per peer - every scenario is a fresh runner: kiln gets a new empty
# --root, docker gets its images removed and its builder cache pruned; the context is
# re-created each time (gen-context.sh into a new directory: new inodes, mtimes and path):
#   A  cold build + push + cache export
#        kiln:   build --cache-to type=registry,ref=R/app:cache,mode=max --push -t R/app:a
#        docker: build --build-arg BUILDKIT_INLINE_CACHE=1, docker push R/app:a
#   B  build with the cache + push
#        kiln:   build --cache-from type=registry,ref=R/app:cache --push -t R/app:b
#        docker: build --cache-from R/app:a, docker push R/app:b
#   C  as B after a one-line change of the case's late file, exporting again (as a CI job would)
#        kiln:   --cache-from R/app:cache --cache-to type=registry,ref=R/app:cache,mode=max
#        docker: --cache-from R/app:a --build-arg BUILDKIT_INLINE_CACHE=1
#   A0 (kiln only) A without the cache export: the base the export's cost is judged against
# docker 20.10's builder only has the inline cache (min mode), so that is the peer's mode.
# R is a repository prefix of its own per peer, case, run and scenario group, holding a copy
# of the base image (the case's Dockerfile is rewritten to use it), so that no blob of an
# earlier run or of the other peer is already there and the access log can be told apart.
#
# Bytes: from the registry's access log (/tmp/peerbench/registry.log, combined format), the
# lines under R of the scenario's time window (a marker request bounds it):
#   down    body bytes of every GET answered 200 (manifests, configs, layers)
#   layers  the part of `down` that is layer blobs (a blob whose stored bytes do not start
#           with `{`, i.e. not a JSON config)
#   up      the stored size of every blob whose upload completed (PUT/POST with ?digest=,
#           201); the log has no request sizes. Mounts upload nothing; manifests not counted.
#
# Usage: benches/ci-cache.sh [-r RUNS] [-c "case ..."] [-p "peer ..."] [-o FILE.csv]
#   RUNS   default 1
#   peers  default: kiln docker
#   cases  default: multistage-parallel many-layers (the shared cases have no `mixed` case:
#          multistage-parallel is the mixed one - parallel stages, COPY --from, a late COPY, RUN)
#   KILN=/path/to/kiln skips the release build (otherwise it builds once with
#   CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench} cargo build --release --locked).
#   BENCH=/path/to/bench overrides /work/shared/bench.
#   COLD_PAUSE=SECONDS after emptying docker's store (default 10; see e2e.sh's clean()).
# Needs root, docker-registry, skopeo, curl, python3, GNU time, and the docker
# peer from setup-peers.sh.
set -uo pipefail
export LC_ALL=C
ROOTDIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-/work/shared/bench}
STATE=/tmp/peerbench
REG=127.0.0.1:5000
REGLOG=$STATE/registry.log
REGBLOBS=$STATE/registry/docker/registry/v2/blobs/sha256
RUNS=1
CASES="multistage-parallel many-layers"
PEERS="kiln docker"
OUT=""
while getopts "r:c:p:o:h" o; do case $o in
  r) RUNS=$OPTARG ;; c) CASES=$OPTARG ;; p) PEERS=$OPTARG ;; o) OUT=$OPTARG ;;
  h) sed -n '2,40p' "$0"; exit 0 ;;
  *) echo "usage: $0 [-r RUNS] [-c CASES] [-p PEERS] [-o CSV]" >&2; exit 2 ;; esac; done

. "$ROOTDIR/benches/lib.sh"
need_root
for t in docker-registry skopeo curl python3; do command -v $t >/dev/null || die "missing $t"; done
[ -x /usr/bin/time ] || die "missing GNU time (apt-get install time)"

# --- work dir, kiln binary -------------------------------------------------------------------
make_work_dir kiln-ci-cache
has_peer() { case " $PEERS " in *" $1 "*) return 0 ;; esac; return 1; }
for p in $PEERS; do case $p in kiln|docker) ;; *) die "unknown peer $p" ;; esac; done
if has_peer kiln; then
  kiln_binary
  "$KILN_BIN" build --help | grep -q -- '--cache-to' || die "this kiln has no --cache-to"
  "$KILN_BIN" build --help | grep -qE -- '^ +--push' || die "this kiln has no build --push"
fi
KILN_BIN=$WORK/kiln

# --- registry, base image, docker ------------------------------------------------------------
ensure_registry
skopeo inspect --tls-verify=false --raw docker://$REG/busybox:latest >/dev/null 2>&1 \
  || die "no $REG/busybox:latest: run $BENCH/setup-peers.sh"
export DOCKER_HOST=unix://$STATE/docker.sock
DOCKER=/usr/bin/docker       # 20.10 client: BuildKit built in (/usr/local/bin/docker needs buildx)
if has_peer docker; then
  [ -x $DOCKER ] && [ -S $STATE/docker.sock ] && $DOCKER info >/dev/null 2>&1 \
    || die "docker peer not usable: run $BENCH/setup-peers.sh"
fi

[ -n "$OUT" ] || OUT=$WORK/results.csv
mkdir -p "$(dirname "$OUT")"
[ -s "$OUT" ] || echo "peer,case,run,scenario,secs,down_bytes,down_layer_bytes,up_bytes,cached_steps,rc" > "$OUT"
LOGS=$WORK/logs; mkdir -p "$LOGS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "cases: $CASES; runs: $RUNS; load: $LOAD_BEFORE; work dir: $WORK"

COLD_PAUSE=${COLD_PAUSE:-10}
TRASH=$WORK/trash
fresh_runner() {  # peer -> an empty store
  case $1 in
  kiln)
    mkdir -p "$TRASH"
    [ -e "$WORK/root-kiln" ] && mv "$WORK/root-kiln" "$TRASH/root.$(date +%s%N)" ;;
  docker)
    $DOCKER image ls -aq | sort -u | xargs -r $DOCKER image rm -f >/dev/null 2>&1
    $DOCKER builder prune -af >/dev/null 2>&1
    $DOCKER image prune -af >/dev/null 2>&1
    sync; sleep "$COLD_PAUSE" ;;
  esac
  sync
}

# A repository prefix of its own, with the base image copied in (done before any timing).
new_prefix() {  # name -> PREFIX
  PREFIX=ci-cache-$$/$1
  skopeo copy -q --src-tls-verify=false --dest-tls-verify=false \
    docker://$REG/busybox:latest docker://$REG/$PREFIX/busybox:latest >/dev/null \
    || die "copying the base image to $REG/$PREFIX failed"
}

# A fresh checkout of case $1 at a new path, its Dockerfile using the base under $PREFIX.
checkout() {  # case dest [change]
  "$BENCH/cases/$1/gen-context.sh" "$2" >/dev/null || die "gen-context $1 failed"
  sed "s#$REG/busybox:latest#$REG/$PREFIX/busybox:latest#g" "$BENCH/cases/$1/Dockerfile" > "$2/Dockerfile"
  if [ "${3:-}" = change ]; then
    echo "# one line changed" >> "$2/$(cat "$BENCH/cases/$1/late-file")"
  fi
}

# The registry log's size once every request answered so far is in it: a marker request is
# answered after them, and its line is written after its answer.
MARKS=0
log_mark() {
  MARKS=$((MARKS + 1))
  local m="/v2/?ci-cache-mark=$$-$MARKS"
  curl -fsS "http://$REG$m" >/dev/null 2>&1
  for _ in $(seq 1 200); do grep -qF "\"GET $m " "$REGLOG" && break; sleep 0.05; done
  stat -c %s "$REGLOG"
}

traffic() {  # from-offset to-offset prefix -> "down layers up"
  python3 - "$REGLOG" "$1" "$2" "$3" "$REGBLOBS" <<'PY'
import os, re, sys, urllib.parse
log, start, end, prefix, blobs = sys.argv[1:]
with open(log, "rb") as f:
    f.seek(int(start))
    lines = f.read(int(end) - int(start)).decode("utf-8", "replace").splitlines()
access = re.compile(r'\] "(\S+) (\S+) [^"]*" (\d+) (\d+|-)')
def blob(digest):
    return os.path.join(blobs, digest[7:9], digest[7:], "data")
def is_layer(digest):
    try:
        with open(blob(digest), "rb") as f:
            return f.read(1) != b"{"
    except OSError:
        return True
down = layers = up = 0
for line in lines:
    m = access.search(line)
    if not m:
        continue
    method, path, status, size = m.group(1), m.group(2), int(m.group(3)), m.group(4)
    if not path.startswith(f"/v2/{prefix}/"):
        continue
    size = 0 if size == "-" else int(size)
    if method == "GET" and status == 200:
        down += size
        if "/blobs/sha256:" in path and is_layer(path.rsplit("/blobs/", 1)[1]):
            layers += size
    if status == 201 and method in ("PUT", "POST") and "/blobs/uploads/" in path:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        if "mount" not in query and "digest" in query:
            up += os.path.getsize(blob(query["digest"][0]))
print(down, layers, up)
PY
}

# The command of one scenario: build (and push) with the cache flags of peer and scenario.
scenario_cmd() {  # peer scenario ctx
  local peer=$1 sc=$2 ctx=$3 app=$REG/$PREFIX/app tag
  case $sc in A0|A) tag=a ;; B) tag=b ;; C) tag=c ;; esac
  local cache=()
  if [ "$peer" = kiln ]; then
    case $sc in
      A)  cache=(--cache-to "type=registry,ref=$app:cache,mode=max") ;;
      B)  cache=(--cache-from "type=registry,ref=$app:cache") ;;
      C)  cache=(--cache-from "type=registry,ref=$app:cache" --cache-to "type=registry,ref=$app:cache,mode=max") ;;
    esac
    CMD=("$KILN_BIN" --root "$WORK/root-kiln" build --progress plain "${cache[@]}" -t "$app:$tag" --push "$ctx")
  else
    case $sc in
      A) cache=(--build-arg BUILDKIT_INLINE_CACHE=1) ;;
      B) cache=(--cache-from "$app:a") ;;
      C) cache=(--cache-from "$app:a" --build-arg BUILDKIT_INLINE_CACHE=1) ;;
    esac
    CMD=(bash -c 'env DOCKER_BUILDKIT=1 "$1" build --network host --progress=plain "${@:4}" -t "$2" "$3" && "$1" push "$2"'
         push "$DOCKER" "$app:$tag" "$ctx" "${cache[@]}")
  fi
}

FAILS=0
run_scenario() {  # peer case run scenario
  local peer=$1 c=$2 run=$3 sc=$4 change=""
  local ctx=$WORK/ctx/$peer-$c-$run-$sc logf=$LOGS/$peer.$c.$run.$sc.log tf=$LOGS/.time
  [ "$sc" = C ] && change=change
  checkout "$c" "$ctx" $change
  fresh_runner "$peer"
  scenario_cmd "$peer" "$sc" "$ctx"
  local from to secs rc cached bytes
  from=$(log_mark)
  sync
  /usr/bin/time -f "%e" -o "$tf" "${CMD[@]}" >"$logf" 2>&1
  rc=$?
  to=$(log_mark)
  secs=$(tail -1 "$tf")
  bytes=$(traffic "$from" "$to" "$PREFIX")
  cached=$(grep -cE '^#[0-9]+ CACHED' "$logf")
  echo "$peer,$c,$run,$sc,$secs,${bytes// /,},$cached,$rc" >> "$OUT"
  log "$peer $c run$run $sc: ${secs}s down/layers/up=$bytes cached=$cached rc=$rc"
  if [ "$rc" != 0 ]; then FAILS=$((FAILS+1)); log "FAILED, see $logf"; tail -5 "$logf" >&2; fi
}

# --- measure -----------------------------------------------------------------------------------
mkdir -p "$WORK/ctx"
for c in $CASES; do
  [ -d "$BENCH/cases/$c" ] || die "no case $c in $BENCH/cases"
  for run in $(seq 1 "$RUNS"); do
    for peer in $PEERS; do
      if [ "$peer" = kiln ]; then
        new_prefix "kiln-$c-$run-plain"
        run_scenario kiln "$c" "$run" A0
      fi
      new_prefix "$peer-$c-$run"
      for sc in A B C; do run_scenario "$peer" "$c" "$run" "$sc"; done
    done
  done
done
fresh_runner kiln
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summarize -----------------------------------------------------------------------------------
med() { rows "$1" "$2" "$3" | median "$4"; }
cell() {  # peer case scenario -> "secs | down KiB | layers KiB | up KiB | cached"
  local r; r=$(rows "$1" "$2" "$3")
  if [ -z "$r" ]; then echo "- | - | - | - | -"; return; fi
  local bad s; bad=$(echo "$r" | awk -F, '$10!=0' | wc -l)
  s=$(echo "$r" | median 5); [ "$bad" -gt 0 ] && s="$s (${bad} failed)"
  echo "$s | $(kib "$(echo "$r" | median 6)") | $(kib "$(echo "$r" | median 7)") | $(kib "$(echo "$r" | median 8)") | $(echo "$r" | median 9)"
}

echo
echo "## kiln CI cache: $RUNS run(s), $(nproc) CPUs, load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo
echo "Medians. KiB from the registry access log: down = all GET bodies, layers = layer blobs among them, up = blobs uploaded."
echo
echo "| case | scenario | kiln s | kiln down KiB | kiln layers KiB | kiln up KiB | kiln cached | docker s | docker down KiB | docker layers KiB | docker up KiB | docker cached | kiln/docker time |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for c in $CASES; do
  for s in A0 A B C; do
    echo "| $c | $s | $(cell kiln "$c" "$s") | $(cell docker "$c" "$s") | $(ratio "$(med kiln "$c" "$s" 5)" "$(med docker "$c" "$s" 5)") |"
  done
done

# --- goals ---------------------------------------------------------------------------------------
echo
echo "## goals (kiln; ratios to docker measured in this run)"
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN{ if (v=="-" || v=="") print "not measured"; else if (v+0 <= lim+0) print "MET"; else print "MISSED" }'; }
for c in $CASES; do
  r=$(ratio "$(med kiln "$c" B 5)" "$(med docker "$c" B 5)")
  layers=$(med kiln "$c" B 7)
  case $layers in "") zero="not measured" ;; 0) zero=MET ;; *) zero="MISSED ($layers bytes)" ;; esac
  echo "- $c B <= 0.2x docker: kiln $(med kiln "$c" B 5)s, docker $(med docker "$c" B 5)s, ratio $r -> $(verdict "$r" 0.2); zero layer bytes downloaded -> $zero"
  r=$(ratio "$(med kiln "$c" C 5)" "$(med docker "$c" C 5)")
  echo "- $c C <= 0.3x docker: kiln $(med kiln "$c" C 5)s, docker $(med docker "$c" C 5)s, ratio $r -> $(verdict "$r" 0.3)"
  r=$(ratio "$(med kiln "$c" A 5)" "$(med kiln "$c" A0 5)")
  echo "- $c A: the export adds <= 10% to build + push: with $(med kiln "$c" A 5)s, without $(med kiln "$c" A0 5)s, ratio $r -> $(verdict "$r" 1.10)"
done
echo
echo "raw rows: $OUT; build logs: $LOGS; failed builds: $FAILS"
[ "$FAILS" = 0 ]
