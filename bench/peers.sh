#!/usr/bin/env bash
# Haven and Node-RED through the same peer harness (../shared/peers), interleaved, then
# one side-by-side table.
#
#   bench/peers.sh [RUNS=3] [WORKERS...=1]        e.g.  bench/peers.sh 3 1 2
#   PEERS_ARGS=--quick bench/peers.sh 1           a ~1 min smoke run
#
# Each round runs Haven once per worker count, then Node-RED (the harness installs it
# under /tmp/peers with npm when missing). Raw JSON and console output go to
# bench/results/raw/<stamp>/ (not committed); the table to bench/results/peers-<stamp>.md
# and bench/results/peers-latest.md. A failed run is kept and marked FAILED in the table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${HAVEN_PEERS_DIR:-$root/../shared/peers}
py=$root/.venv/bin/python
[ -x "$py" ] || py=python3
[ -f "$peers/bench_pipeline.py" ] || { echo "peers.sh: no harness at $peers (set HAVEN_PEERS_DIR)" >&2; exit 2; }
runs=${1:-3}
shift || true

[ $# -gt 0 ] && workers=("$@") || workers=(1)
stamp=$(date -u +%Y%m%d-%H%M%S)
raw=$root/bench/results/raw/$stamp
mkdir -p "$raw"
# shellcheck disable=SC2086  # PEERS_ARGS is a list of flags
run() {  # run LABEL ARGS...
  local out=$1; shift
  echo "=== $out ==="
  "$py" "$peers/bench_pipeline.py" --out "$raw/$out.json" ${PEERS_ARGS:-} "$@" 2>&1 \
    | tee "$raw/$out.txt" || echo "peers.sh: $out FAILED (kept; see $raw/$out.txt)"
}
for i in $(seq 1 "$runs"); do
  for w in "${workers[@]}"; do
    run "haven-${w}w-run$i" --adapter "$root/bench/peers_adapter.py:HavenAdapter" \
      --adapter-opt "workers=$w"
  done
  run "nodered-run$i" --adapter nodered
done
"$py" "$peers/summarize.py" "$raw"/*-run*.json --md "$root/bench/results/peers-$stamp.md" \
  --json "$raw/summary.json"
cp "$root/bench/results/peers-$stamp.md" "$root/bench/results/peers-latest.md"
echo "table: bench/results/peers-$stamp.md (and peers-latest.md); raw: $raw"
