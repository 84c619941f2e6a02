#!/usr/bin/env bash
# Measures `baton ping` across the nodes bin/quickstart started: the in-process round trip
# (request published to the last reply verified, from `--json`), and the whole command as a
# person or a script sees it (process start, connect, discovery-free broadcast, exit).
#
#   bin/quickstart                      # once: private broker + 4 nodes, release build
#   integration/ping-roundtrip.sh [RUNS] [-- extra baton ping args]
#
# Prints median and 95th percentile of each. Nothing here asserts on time.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-50}; shift || true; [ "${1:-}" = "--" ] && shift
state=${BATON_STATE_DIR:-$repo/.baton}/quickstart
baton=${CARGO_TARGET_DIR:-$repo/target}/release/baton
[ -x "$baton" ] && [ -f "$state/client.toml" ] || { echo "run bin/quickstart first" >&2; exit 2; }
export BATON_CONFIG=$state/client.toml
nodes=$(ls -d "$state"/*/ | wc -l)

rtt=(); wall=()
for _ in $(seq 1 "$runs"); do
  start=$(date +%s%N)
  # Directed pings to every node: the client knows whom to wait for and stops at the last reply.
  json=$("$baton" ping -I web01 -I web02 -I db01 -I app01 --json "$@")
  end=$(date +%s%N)
  rtt+=("$(printf '%s' "$json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["last_reply_ms"])')")
  wall+=("$(( (end - start) / 1000 ))")
done

stats() { # label unit values...
  local label=$1 unit=$2; shift 2
  printf '%s\n' "$@" | python3 -c '
import sys, statistics
label, unit = sys.argv[1], sys.argv[2]
values = sorted(float(line) for line in sys.stdin if line.strip())
p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
scale = 1000.0 if unit == "us" else 1.0
print(f"{label:<44} median {statistics.median(values)/scale:8.2f} ms   p95 {p95/scale:8.2f} ms   (n={len(values)})")
' "$label" "$unit"
}
echo "baton ping to $nodes quickstart nodes, $runs runs ($(nproc) cores, $(uname -r))"
stats "round trip (publish -> last verified reply)" ms "${rtt[@]}"
stats "whole command (exec -> exit)" us "${wall[@]}"
