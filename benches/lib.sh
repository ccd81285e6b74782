# Shared by the whole-build benchmarks (e2e.sh, ci-cache.sh); sourced, not run.
# Expects ROOTDIR (the checkout), BENCH (the shared bench dir) and KILN (optional binary).

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
  [ "$(id -u)" = 0 ] || die "needs root (kiln RUN uses namespaces and overlayfs)"
}

# A work dir /tmp/NAME.XXXXXX in WORK; its roots, contexts and binary go at exit (logs/ and
# results.csv stay).
make_work_dir() {  # name
  WORK=$(mktemp -d "/tmp/$1.XXXXXX")
  trap 'rm -rf "$WORK"/root-* "$WORK/trash" "$WORK/ctx" "$WORK/kiln"' EXIT
  trap 'exit 130' INT TERM
}

# The kiln under test as $WORK/kiln: $KILN, or a release build of this checkout.
kiln_binary() {
  if [ -z "${KILN:-}" ]; then
    log "building kiln (release)"
    ( cd "$ROOTDIR" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench} cargo build --release --locked --quiet ) \
      || die "cargo build failed"
    cp "${CARGO_TARGET_DIR:-/work/target-bench}/release/kiln" "$WORK/kiln"
  else
    cp "$KILN" "$WORK/kiln"
  fi
  KILN_BIN=$WORK/kiln
  "$KILN_BIN" --help >/dev/null 2>&1 || die "kiln binary does not run"
}

# The shared bench registry, started when it is not running.
ensure_registry() {
  if "$BENCH/registry.sh" status 2>&1 | grep -q 'not running'; then
    "$BENCH/registry.sh" start >&2 || die "registry.sh start failed"
  fi
}

# --- summaries over the results CSV ($OUT: peer,case,run,scenario,…) ---------------------------
rows() { awk -F, -v p="$1" -v c="$2" -v s="$3" 'NR>1 && $1==p && $2==c && $4==s' "$OUT"; }
median() {  # column number -> median of the rows on stdin ("" if none)
  cut -d, -f"$1" | sort -g | awk '{v[NR]=$1} END{ if (NR==0) print ""; else if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="" || b=="" || b+0==0) print "-"; else printf "%.2f", a/b }'; }
kib() { [ -n "$1" ] && awk -v b="$1" 'BEGIN{printf "%.0f", b/1024}' || echo -; }
