#!/usr/bin/env bash
# Haven and Node-RED through the same peer harness (../shared/peers), interleaved, then
# one side-by-side table.
#
#   bench/peers.sh [RUNS=3] [WORKERS...=1]        e.g.  bench/peers.sh 3 1 2
#   PEERS_ARGS=--quick bench/peers.sh 1           a ~1 min smoke run
#   PEERS_BROKER_NODELAY=1 bench/peers.sh 3 1      diagnostic: the harness's broker with
#       set_tcp_nodelay true (as Haven's own broker config, hub/provision/mosquitto.py);
#       runs a patched copy of the harness from a temp dir, labels get a -nodelay suffix
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
suffix=
if [ -n "${PEERS_BROKER_NODELAY:-}" ]; then
  copy=$(mktemp -d /tmp/haven-peers-nodelay.XXXXXX)
  cp -r "$peers"/bench_pipeline.py "$peers"/fake_twilio.py "$peers"/summarize.py \
    "$peers"/adapters "$copy"/
  sed -i 's/"persistence false\\n"/"persistence false\\nset_tcp_nodelay true\\n"/' \
    "$copy/bench_pipeline.py"
  grep -q 'set_tcp_nodelay true' "$copy/bench_pipeline.py" \
    || { echo "peers.sh: could not patch the harness's broker config" >&2; exit 2; }
  peers=$copy
  suffix=-nodelay
fi
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
    run "haven-${w}w$suffix-run$i" --adapter "$root/bench/peers_adapter.py:HavenAdapter" \
      --adapter-opt "workers=$w"
  done
  run "nodered$suffix-run$i" --adapter nodered
done
"$py" "$peers/summarize.py" "$raw"/*-run*.json --md "$root/bench/results/peers-$stamp.md" \
  --json "$raw/summary.json"
cp "$root/bench/results/peers-$stamp.md" "$root/bench/results/peers-latest.md"
echo "table: bench/results/peers-$stamp.md (and peers-latest.md); raw: $raw"
