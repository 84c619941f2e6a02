#!/usr/bin/env bash
# integration/cluster-storm.sh [COUNT]: COUNT (default 1000) virtual nodes of baton-emulator on
# the three-member cluster of `bin/broker start rabbitmq-cluster`, all on member 1; member 1 is
# stopped, and a client on member 3 pings every node until all answer again. Prints how many
# answered each second and the outage (first incomplete ping to the first complete one after
# it). A measurement for docs/PERFORMANCE.md, not a test: no bound is asserted. Member 1 is
# started again at the end. Uses the binaries of target/debug (cargo build --bins first).
set -euo pipefail
count="${1:-1000}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BATON_BIN_DIR:-$root/target/debug}"
eval "$("$root/bin/broker" env rabbitmq-cluster)"
work="$(mktemp -d)"
cleanup() {
    [[ -n "${emulator:-}" ]] && kill "$emulator" 2>/dev/null && wait "$emulator" 2>/dev/null
    "$root/bin/broker" start-member rabbitmq-cluster 1 >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
(umask 077 && openssl rand -hex 32 >"$work/psk")
collective=baton
urls_toml() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1].split(",")))' "$1"; }
clients="$(python3 -c 'import sys; u=sys.argv[1].split(","); print(",".join(u[2:]+u[:2]))' "$BATON_CLUSTER_CLIENT_URLS")"
cat >"$work/emulator.toml" <<TOML
identity = "emulator"
collectives = ["$collective"]
[broker]
urls = $(urls_toml "$BATON_CLUSTER_NODE_URLS")
max_backoff_secs = 2
[security]
scheme = "psk"
psk_file = "$work/psk"
TOML
cat >"$work/client.toml" <<TOML
identity = "storm"
caller = "user=storm"
collective = "$collective"
timeout_secs = 10
discovery_timeout_secs = 5
[broker]
urls = $(urls_toml "$clients")
[security]
scheme = "psk"
psk_file = "$work/psk"
TOML
"$bin/baton-emulator" --config "$work/emulator.toml" --count "$count" --seed 7 --connections 10 \
    >"$work/emulator.out" 2>"$work/emulator.log" &
emulator=$!
for _ in $(seq 600); do grep -q '^ready' "$work/emulator.out" && break; sleep 0.5; done
grep '^ready' "$work/emulator.out" || { tail "$work/emulator.log"; exit 1; }
# baton exits 3 while some nodes are silent: that is what is being counted, not a failure.
answered() { { "$bin/baton" ping -c "$work/client.toml" --json 2>/dev/null || true; } | jq '.replies | length'; }
echo "before the stop: $(answered) of $count answer"
"$root/bin/broker" stop-member rabbitmq-cluster 1 >/dev/null 2>&1 &
stopper=$!
start=$(date +%s.%N) first_failure="" 
while :; do
    sent=$(date +%s.%N)
    n="$(answered)"
    printf '%6.1f s  %s answered\n' "$(echo "$sent - $start" | bc)" "$n"
    if [[ "$n" != "$count" && -z "$first_failure" ]]; then first_failure=$sent; fi
    if [[ "$n" == "$count" && -n "$first_failure" ]]; then
        echo "outage: $(echo "$(date +%s.%N) - $first_failure" | bc) s"
        break
    fi
    if (($(echo "$(date +%s.%N) - $start > ${STORM_LIMIT_SECS:-300}" | bc))); then
        echo "not recovered: $n of $count answer ${STORM_LIMIT_SECS:-300} s after the stop began"
        break
    fi
    if [[ "$n" == "$count" && -z "$first_failure" ]] && ! kill -0 "$stopper" 2>/dev/null; then
        echo "outage: none seen"
        break
    fi
done
wait "$stopper"
echo "emulator reconnections: $(grep -c 'reconnected to the broker' "$work/emulator.log" || true)"
