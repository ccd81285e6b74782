#!/usr/bin/env bash
# End-to-end build benchmark: kiln against docker+BuildKit and buildah, in the same run.
#
# Uses the peers' benchmark in /work/shared/bench (cases small, multistage-parallel,
# many-layers, big-context; see its README.md). Per case, per run, per peer:
#   cold   : fresh store (kiln: a new empty --root; docker/buildah: images and cache
#            removed), so the 1 MiB base 127.0.0.1:5000/busybox:latest is pulled again
#   noop   : identical rebuild
#   change : one line appended to the case's late file, then a rebuild
#   touch  : mtime-only touch of the late file, then a rebuild
# plus, for multistage-parallel, `cold-s1`: kiln building the single stage s1 alone
# (`--target s1`, fresh root) - the floor kiln's parallel cold build is judged against.
#
# Prints median wall-clock seconds, peak RSS (MiB) and cached-step counts per peer, and the
# kiln/docker ratios, then checks the goals. Raw rows go to the CSV (-o).
#
# Usage: benches/e2e.sh [-r RUNS] [-c "case ..."] [-p "peer ..."] [-o FILE.csv]
#   RUNS   default 3
#   cases  default: small multistage-parallel many-layers big-context
#   peers  kiln docker buildah-oci buildah-chroot; default kiln, plus docker and
#          buildah-oci when they are usable (dockerd from setup-peers.sh on
#          /tmp/peerbench/docker.sock; buildah installed)
#   KILN=/path/to/kiln skips the release build (otherwise it builds once with
#   CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench} cargo build --release --locked).
#   BENCH=/path/to/bench overrides /work/shared/bench.
#   COLD_PAUSE=SECONDS: the pause after emptying a peer's store before its cold build
#   (default 30; see clean() for why). kiln's old roots are moved aside, not paused for.
#
# Timing: GNU time around the CLI, `sync` before each build, page cache not dropped.
# Peak RSS: kiln and buildah - GNU time %M (the largest process of the tree); docker - the
# VmHWM of dockerd plus its containerd, reset through clear_refs before each build (the CLI's
# own %M is in the CSV). Cached steps: `#N CACHED` lines (kiln, docker), `Using cache`
# (buildah). Needs root, docker-registry, skopeo, busybox-static, jq, GNU time.
set -uo pipefail
export LC_ALL=C
ROOTDIR=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH:-/work/shared/bench}
STATE=/tmp/peerbench
RUNS=3
CASES="small multistage-parallel many-layers big-context"
PEERS=""
OUT=""
while getopts "r:c:p:o:h" o; do case $o in
  r) RUNS=$OPTARG ;; c) CASES=$OPTARG ;; p) PEERS=$OPTARG ;; o) OUT=$OPTARG ;;
  h) sed -n '2,30p' "$0"; exit 0 ;;
  *) echo "usage: $0 [-r RUNS] [-c CASES] [-p PEERS] [-o CSV]" >&2; exit 2 ;; esac; done

. "$ROOTDIR/benches/lib.sh"
need_root

# --- tools ------------------------------------------------------------------------------
need=()
for t in docker-registry:docker-registry skopeo:skopeo jq:jq busybox:busybox-static; do
  command -v "${t%%:*}" >/dev/null || need+=("${t#*:}")
done
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null || die "apt-get install ${need[*]} failed"
fi

# --- work dir, kiln binary ------------------------------------------------------------------
make_work_dir kiln-e2e
kiln_binary

# --- registry and base image (as the peers get it) ------------------------------------------
ensure_registry
if ! skopeo inspect --tls-verify=false --raw docker://127.0.0.1:5000/busybox:latest >/dev/null 2>&1; then
  log "pushing the base image (make-base.sh)"
  "$BENCH/make-base.sh" >&2 || die "make-base.sh failed"
fi

# --- peers ------------------------------------------------------------------------------------
export DOCKER_HOST=unix://$STATE/docker.sock
DOCKER=/usr/bin/docker       # 20.10 client: BuildKit built in (/usr/local/bin/docker needs buildx)
BUILDAH=(buildah --root /var/lib/buildah-bench --runroot $STATE/buildah-runroot --storage-driver overlay)
docker_ok() { [ -x $DOCKER ] && [ -S $STATE/docker.sock ] && [ -f $STATE/dockerd.pid ] && $DOCKER info >/dev/null 2>&1; }
buildah_ok() { command -v buildah >/dev/null && command -v runc >/dev/null; }
if [ -z "$PEERS" ]; then
  PEERS=kiln
  docker_ok && PEERS="$PEERS docker"
  buildah_ok && PEERS="$PEERS buildah-oci"
fi
for p in $PEERS; do case $p in
  kiln) ;;
  docker) docker_ok || die "docker peer not usable: run $BENCH/setup-peers.sh" ;;
  buildah-*) buildah_ok || die "buildah peer not usable: run $BENCH/setup-peers.sh" ;;
  *) die "unknown peer $p" ;; esac; done

[ -n "$OUT" ] || OUT=$WORK/results.csv
mkdir -p "$(dirname "$OUT")"
[ -s "$OUT" ] || echo "peer,case,run,scenario,secs,maxrss_kb,client_maxrss_kb,cached_steps,rc" > "$OUT"
LOGS=$WORK/logs; mkdir -p "$LOGS"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
log "peers: $PEERS; cases: $CASES; runs: $RUNS; load: $LOAD_BEFORE; work dir: $WORK"

# A cold build right after deleting a big store is slowed by ext4, not by the builder: for
# about 30 s after many inodes are freed, every new inode makes ext4 scan the freed ones
# (measured: a cold build of a 12k-file case took 6.1-9.4 s right after such a delete,
# 2.1-2.4 s after a pause). So kiln's old roots are moved aside and deleted after all the
# timing (at exit), and the peers, whose stores can only be emptied in place, get a pause
# of COLD_PAUSE seconds (default 30) after their clean-up before the cold build.
COLD_PAUSE=${COLD_PAUSE:-30}
TRASH=$WORK/trash
clean() {
  case $1 in
  kiln)
    mkdir -p "$TRASH"
    [ -e "$WORK/root-$2" ] && mv "$WORK/root-$2" "$TRASH/root-$2.$(date +%s%N)" ;;
  docker)
    $DOCKER image ls -aq | sort -u | xargs -r $DOCKER image rm -f >/dev/null 2>&1
    $DOCKER builder prune -af >/dev/null 2>&1
    $DOCKER image prune -af >/dev/null 2>&1
    sync; sleep "$COLD_PAUSE" ;;
  buildah-*)
    "${BUILDAH[@]}" rm --all >/dev/null 2>&1
    "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1
    sync; sleep "$COLD_PAUSE" ;;
  esac
  sync
}

build_cmd() {  # peer case [extra args...] -> CMD
  local peer=$1 c=$2; shift 2
  local df=$BENCH/cases/$c/Dockerfile ctx=$WORK/ctx/$c
  case $peer in
  kiln)           CMD=("$KILN_BIN" --root "$WORK/root-$c" build --progress plain "$@" -f "$df" -t "bench/$c" "$ctx") ;;
  docker)         CMD=(env DOCKER_BUILDKIT=1 $DOCKER build --network host --progress=plain "$@" -f "$df" -t "bench/$c" "$ctx") ;;
  buildah-oci)    CMD=("${BUILDAH[@]}" bud --layers --isolation oci --runtime runc --network host --tls-verify=false "$@" -f "$df" -t "bench/$c" "$ctx") ;;
  buildah-chroot) CMD=("${BUILDAH[@]}" bud --layers --isolation chroot --network host --tls-verify=false "$@" -f "$df" -t "bench/$c" "$ctx") ;;
  esac
}

FAILS=0
timed_build() {  # peer case run scenario [extra build args...]
  local peer=$1 c=$2 run=$3 sc=$4; shift 4
  local logf=$LOGS/$peer.$c.$run.$sc.log tf=$LOGS/.time dpid="" cpid="" rss crss secs cached rc
  build_cmd "$peer" "$c" "$@"
  if [ "$peer" = docker ]; then
    dpid=$(cat $STATE/dockerd.pid); cpid=$(pgrep -P "$dpid" -x containerd | head -1)
    echo 5 > /proc/$dpid/clear_refs; [ -n "$cpid" ] && echo 5 > /proc/$cpid/clear_refs
  fi
  sync
  /usr/bin/time -f "%e %M" -o "$tf" "${CMD[@]}" >"$logf" 2>&1
  rc=$?
  read -r secs crss < <(tail -1 "$tf")
  rss=$crss
  if [ "$peer" = docker ]; then
    local dh ch=0
    dh=$(awk '/VmHWM/{print $2}' /proc/$dpid/status)
    [ -n "$cpid" ] && ch=$(awk '/VmHWM/{print $2}' /proc/$cpid/status)
    rss=$(( dh + ch ))
  fi
  case $peer in
    kiln|docker) cached=$(grep -cE '^#[0-9]+ CACHED' "$logf") ;;
    *)           cached=$(grep -c 'Using cache' "$logf") ;;
  esac
  echo "$peer,$c,$run,$sc,$secs,$rss,$crss,$cached,$rc" >> "$OUT"
  log "$peer $c run$run $sc: ${secs}s rss=$((rss/1024))MiB cached=$cached rc=$rc"
  if [ "$rc" != 0 ]; then FAILS=$((FAILS+1)); log "FAILED, see $logf"; tail -5 "$logf" >&2; fi
}

# --- measure -----------------------------------------------------------------------------------
mkdir -p "$WORK/ctx"
for c in $CASES; do
  [ -d "$BENCH/cases/$c" ] || die "no case $c in $BENCH/cases"
  log "generating context for $c"
  "$BENCH/cases/$c/gen-context.sh" "$WORK/ctx/$c" >/dev/null || die "gen-context $c failed"
  late=$WORK/ctx/$c/$(cat "$BENCH/cases/$c/late-file")
  for run in $(seq 1 "$RUNS"); do
    for peer in $PEERS; do
      if [ "$peer" = kiln ] && [ "$c" = multistage-parallel ]; then
        clean kiln "$c"
        timed_build kiln "$c" "$run" cold-s1 --target s1
      fi
      clean "$peer" "$c"
      timed_build "$peer" "$c" "$run" cold
      timed_build "$peer" "$c" "$run" noop
      echo "# change $peer $run $(date +%s%N)" >> "$late"
      timed_build "$peer" "$c" "$run" change
      sleep 1; touch "$late"
      timed_build "$peer" "$c" "$run" touch
    done
  done
  clean kiln "$c"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summarize -----------------------------------------------------------------------------------
maxcol() { cut -d, -f"$1" | sort -g | tail -1; }
med() { rows "$1" "$2" "$3" | median 5; }
mib() { [ -n "$1" ] && awk -v k="$1" 'BEGIN{printf "%.0f", k/1024}' || echo -; }

echo
echo "## kiln e2e: $RUNS run(s), $(nproc) CPUs, load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
echo
hdr="| case | scenario |"; sep="|---|---|"
for p in $PEERS; do hdr="$hdr $p s | $p RSS MiB | $p cached |"; sep="$sep---:|---:|---:|"; done
case " $PEERS " in *" docker "*) hdr="$hdr kiln/docker |"; sep="$sep---:|" ;; esac
echo "$hdr"; echo "$sep"
for c in $CASES; do
  for s in cold cold-s1 noop change touch; do
    [ -n "$(rows kiln "$c" "$s"; for p in $PEERS; do rows "$p" "$c" "$s"; done)" ] || continue
    line="| $c | $s |"
    for p in $PEERS; do
      r=$(rows "$p" "$c" "$s")
      if [ -z "$r" ]; then line="$line - | - | - |"; continue; fi
      bad=$(echo "$r" | awk -F, '$9!=0' | wc -l)
      m=$(echo "$r" | median 5); [ "$bad" -gt 0 ] && m="$m (${bad} failed)"
      line="$line $m | $(mib "$(echo "$r" | maxcol 6)") | $(echo "$r" | median 8) |"
    done
    case " $PEERS " in *" docker "*) line="$line $(ratio "$(med kiln "$c" "$s")" "$(med docker "$c" "$s")") |" ;; esac
    echo "$line"
  done
done

# --- goals ---------------------------------------------------------------------------------------
echo
echo "## goals (kiln; ratios to docker measured in this run)"
verdict() { awk -v v="$1" -v lim="$2" 'BEGIN{ if (v=="-" || v=="") print "not measured"; else if (v+0 <= lim+0) print "MET"; else print "MISSED" }'; }
has() { case " $CASES " in *" $1 "*) return 0 ;; esac; return 1; }
if has big-context; then
  r=$(ratio "$(med kiln big-context noop)" "$(med docker big-context noop)")
  echo "- no-op big-context <= 0.1x docker: kiln $(med kiln big-context noop)s, docker $(med docker big-context noop)s, ratio $r -> $(verdict "$r" 0.1)"
  r=$(ratio "$(med kiln big-context change)" "$(med docker big-context change)")
  echo "- one-file-change big-context <= 0.2x docker: kiln $(med kiln big-context change)s, docker $(med docker big-context change)s, ratio $r -> $(verdict "$r" 0.2)"
fi
if has many-layers; then
  r=$(ratio "$(med kiln many-layers cold)" "$(med docker many-layers cold)")
  echo "- cold many-layers <= 0.5x docker: kiln $(med kiln many-layers cold)s, docker $(med docker many-layers cold)s, ratio $r -> $(verdict "$r" 0.5)"
fi
if has multistage-parallel; then
  r=$(ratio "$(med kiln multistage-parallel cold)" "$(med kiln multistage-parallel cold-s1)")
  echo "- multistage-parallel cold <= 1.3x one stage alone (--target s1, cold): kiln $(med kiln multistage-parallel cold)s vs $(med kiln multistage-parallel cold-s1)s, ratio $r -> $(verdict "$r" 1.3)"
fi
for c in $CASES; do
  m=$(awk -F, -v c="$c" 'NR>1 && $1=="kiln" && $2==c {print $6}' "$OUT" | sort -g | tail -1)
  echo "- peak RSS <= 100 MiB, $c: $(mib "$m") MiB -> $(verdict "$(mib "$m")" 100)"
done
echo
echo "raw rows: $OUT; build logs: $LOGS; failed builds: $FAILS"
[ "$FAILS" = 0 ]
