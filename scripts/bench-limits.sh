#!/usr/bin/env bash
# The machine's limits, measured by ../shared/bench, for BENCHMARKS.md's ratios.
#
# usage: bash scripts/bench-limits.sh [runs=1] [parts...]
#   parts (run in the order given, repeats allowed; default: disk sled-raw pg):
#     disk, sled-raw, pg   the shared limit scripts (`bash <part>/run.sh runs`)
#     ours                 our criterion benches: `cargo bench --bench log_append --bench replay`
#   e.g. the whole side-by-side window of BENCHMARKS.md: bash scripts/bench-limits.sh 1 disk sled-raw pg ours sled-raw disk
#   env BENCH_SRC  the shared bench dir (default: ../shared/bench next to this repo; read-only)
#   env OUT        where results go (default: target/bench-limits/<UTC time>)
#
# The shared scripts write into their own directory (results.txt, a compiled fsyncbench, sled-raw's
# target/ and data/), so each part is copied to $WORK/<part> (default target/bench-limits/work, on
# /work like our benches' data; disk/run.sh also measures /tmp) and run there. The copy of
# sled-raw gets an empty [workspace] table so cargo does not take it for a member of this
# workspace; its build is kept between runs. Parts run one after another, never concurrently
# (they share 2 cores and one disk). Per part with runs=1, measured on this (busy) machine: disk
# 97-119 s (incl. pg_test_fsync), sled-raw 162-188 s (+ ~1 min to build it the first time), pg
# 52-62 s, ours 383-471 s.
# Writes OUT/<n>-<part>.log (full output), OUT/<n>-<part>.results.txt, OUT/load.txt (load average before and
# after each part), OUT/vmstat.txt (CPU use every 5 s), OUT/env.txt and OUT/summary.md (the shared
# summarize.py table for these parts). Needs root for apt-get, `su postgres` and drop_caches.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${1:-1}; shift || true
PARTS=("$@"); [ ${#PARTS[@]} -eq 0 ] && PARTS=(disk sled-raw pg)
SRC=${BENCH_SRC:-$ROOT/../shared/bench}
OUT=${OUT:-$ROOT/target/bench-limits/$(date -u +%Y%m%dT%H%M%SZ)}
WORK=${WORK:-$ROOT/target/bench-limits/work}   # on /work, like the log benches' data
mkdir -p "$OUT" "$WORK"

need=()
for t in fio pgbench psql jq bc gcc cargo strace; do command -v "$t" > /dev/null || need+=("$t"); done
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing the limit scripts' tools (missing: ${need[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get install -y fio postgresql nginx wrk sysstat bc strace jq > "$OUT/apt.log" 2>&1 ||
    { echo "apt-get failed, see $OUT/apt.log"; exit 1; }
fi

{ date -u; uname -r; nproc; grep -m1 'model name' /proc/cpuinfo; free -m | head -2; df -h /work /tmp | tail -2
  echo "vda write_cache=$(cat /sys/block/vda/queue/write_cache 2>/dev/null) rotational=$(cat /sys/block/vda/queue/rotational 2>/dev/null)"
  rustc --version; gcc --version | head -1; fio --version; /usr/lib/postgresql/15/bin/postgres --version; } > "$OUT/env.txt" 2>&1

vmstat -t 5 > "$OUT/vmstat.txt" 2>&1 &
VMSTAT=$!
trap 'kill $VMSTAT 2>/dev/null' EXIT

cp "$SRC/summarize.py" "$WORK/"
rm -f "$WORK"/*/results.txt "$WORK"/*/all-results.txt   # the summary covers this window only
echo "limits: runs=$RUNS parts=${PARTS[*]} out=$OUT"
n=0
for part in "${PARTS[@]}"; do
  n=$((n + 1)); tag=$(printf '%02d-%s' "$n" "$part")
  echo "$(date -u +%T) before $tag: load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
  start=$(date +%s)
  if [ "$part" = ours ]; then
    # Build first (not timed, but in the window: other work on the machine is reported by load.txt).
    cargo bench --no-run --bench log_append --bench replay > "$OUT/$tag.build.log" 2>&1
    cargo bench --bench log_append --bench replay > "$OUT/$tag.log" 2>&1
    rc=$?
    cp target/bench-results/*.json "$OUT/" 2>/dev/null
  else
    mkdir -p "$WORK/$part"
    cp -a "$SRC/$part/." "$WORK/$part/"   # scripts and sources; keeps sled-raw's target/ from earlier runs
    if [ -f "$WORK/$part/Cargo.toml" ] && ! grep -q '^\[workspace\]' "$WORK/$part/Cargo.toml"; then
      printf '\n[workspace]\n' >> "$WORK/$part/Cargo.toml"
    fi
    rm -f "$WORK/$part/results.txt"
    bash "$WORK/$part/run.sh" "$RUNS" > "$OUT/$tag.log" 2>&1
    rc=$?
    cp "$WORK/$part/results.txt" "$OUT/$tag.results.txt" 2>/dev/null
    cat "$WORK/$part/results.txt" >> "$WORK/$part/all-results.txt" 2>/dev/null
  fi
  echo "$(date -u +%T) after $tag: rc=$rc, $(( $(date +%s) - start )) s, load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
done
# summarize.py reads <part>/results.txt: give it every run of this window
for part in disk sled-raw pg; do
  [ -f "$WORK/$part/all-results.txt" ] && mv "$WORK/$part/all-results.txt" "$WORK/$part/results.txt"
done
rm -rf "$WORK/sled-raw/data" "$WORK/disk/fsb.dat" /tmp/fsb.dat   # ~700 MB of scratch data

(cd "$WORK" && python3 summarize.py) 2>/dev/null | grep -v '| n/a' > "$OUT/summary.md"
echo; cat "$OUT/summary.md"
echo; echo "results in $OUT"
