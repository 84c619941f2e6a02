#!/usr/bin/env bash
# integration/cluster-storm.sh [COUNT]: COUNT (default 1000) virtual nodes of baton-emulator on
# the three-member cluster of `bin/broker start rabbitmq-cluster`, all on member 1 (or, with
# STORM_SPREAD=3, in three emulators, one starting on each member); member 1 is stopped, and a
# client on member 3 sends `rpcutil ping` to every node by name, again and again, until all
# answer again. Prints each round's accounting (replied, no response, unaccounted: targeted
# nodes in neither list, which must be 0; a round whose client failed outright is printed with
# its error) and the outage (first incomplete round to the first complete one after it). A
# measurement for docs/PERFORMANCE.md, not a test: no bound is asserted.
#
# STORM_LOSSES=N (default 1) repeats it: member 1 is started again once the nodes all answer,
# then member 2 is stopped, then 3, 1, ... (N member losses in all), and the median outage is
# printed at the end. Every stopped member is started again at the end.
#
# Uses the binaries of target/debug (cargo build --bins first), or of BATON_BIN_DIR (e.g.
# target/release). STORM_CONNECTIONS (default 10) connections per emulator, STORM_TIMEOUT_SECS
# (default 10) the client's -t, STORM_LIMIT_SECS (default 300) how long to wait for recovery
# after each stop, STORM_MAX_BACKOFF_SECS (default 30, a node's default) the emulators'
# broker.max_backoff_secs, STORM_KEEP=1 keeps the work directory (configs, emulator logs).
set -euo pipefail
count="${1:-1000}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${BATON_BIN_DIR:-$root/target/debug}"
eval "$("$root/bin/broker" env rabbitmq-cluster)"
spread="${STORM_SPREAD:-1}"
connections="${STORM_CONNECTIONS:-10}"
work="$(mktemp -d)"
emulators=()
losses="${STORM_LOSSES:-1}"
cleanup() {
    for pid in "${emulators[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    for member in 1 2 3; do "$root/bin/broker" start-member rabbitmq-cluster "$member" >/dev/null 2>&1 || true; done
    [[ -n "${STORM_KEEP:-}" ]] && echo "kept: $work" || rm -rf "$work"
}
trap cleanup EXIT
(umask 077 && openssl rand -hex 32 >"$work/psk")
collective=baton
urls_toml() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1].split(",")))' "$1"; }
# rotated URLS K: the comma-separated list URLS starting at its K-th member (0-based).
rotated() { python3 -c 'import sys; u=sys.argv[1].split(","); k=int(sys.argv[2]); print(",".join(u[k:]+u[:k]))' "$1" "$2"; }
clients="$(rotated "$BATON_CLUSTER_CLIENT_URLS" 2)"
for ((k = 0; k < spread; k++)); do
    cat >"$work/emulator-$k.toml" <<TOML
identity = "emulator"
collectives = ["$collective"]
[broker]
urls = $(urls_toml "$(rotated "$BATON_CLUSTER_NODE_URLS" "$k")")
max_backoff_secs = ${STORM_MAX_BACKOFF_SECS:-30}
[security]
scheme = "psk"
psk_file = "$work/psk"
TOML
done
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
share=$(((count + spread - 1) / spread))
for ((k = 0; k < spread; k++)); do
    first=$((1 + k * share)) n=$((count - k * share < share ? count - k * share : share))
    "$bin/baton-emulator" --config "$work/emulator-$k.toml" --count "$n" --first "$first" --seed 7 \
        --connections "$connections" >"$work/emulator-$k.out" 2>"$work/emulator-$k.log" &
    emulators+=($!)
done
for ((k = 0; k < spread; k++)); do
    for _ in $(seq 3600); do grep -q '^ready' "$work/emulator-$k.out" && break; sleep 0.5; done
    grep '^ready' "$work/emulator-$k.out" || { tail "$work/emulator-$k.log"; exit 1; }
done
seq -f 'emu-%05g' 1 "$count" >"$work/nodes"
# One round: rpcutil ping to every node by name. Prints "replied no_response unaccounted
# last_reply_ms", or "error - - -" when the client failed outright (its last line of stderr is
# then in $work/round.err). baton exits 3 while some nodes are silent: that is what is counted.
round() {
    "$bin/baton" rpc rpcutil ping --nodes "$work/nodes" -t "${STORM_TIMEOUT_SECS:-10}" \
        -c "$work/client.toml" --json >"$work/round.json" 2>"$work/round.err" || true
    # An error document ({"type": "error", "error": ...}) goes to round.err for the report.
    jq -r 'select(.type == "error") | .error' "$work/round.json" >>"$work/round.err" 2>/dev/null || true
    jq -r 'if .type == "error" then ["error", "-", "-", "-"] else
            [(.replies | length), (.no_response | length),
             ((.targeted | length) - (.replies | length) - (.no_response | length) - (.skipped | length)),
             (.stats.last_reply_ms // 0 | floor)] end | @tsv' "$work/round.json" 2>/dev/null |
        grep . || printf 'error\t-\t-\t-\n'
}
for _ in 1 2 3; do
    read -r replied silent unaccounted last_ms < <(round)
    echo "before the stop: $replied of $count answer (last reply at $last_ms ms), $silent no response, $unaccounted unaccounted"
done
outages=() all_unaccounted=0 all_silent=0 all_errors=0
for ((loss = 1; loss <= losses; loss++)); do
    stopped=$(((loss - 1) % 3 + 1))
    echo "--- loss $loss of $losses: member $stopped stops ($(cut -d' ' -f1-3 /proc/loadavg)) ---"
    reconnected_before=$(cat "$work"/emulator-*.log | grep -c 'reconnected to the broker' || true)
    "$root/bin/broker" stop-member rabbitmq-cluster "$stopped" >/dev/null 2>&1 &
    stopper=$!
    start=$(date +%s.%N) first_failure="" total_unaccounted=0 total_silent=0 errors=0 outage=""
    while :; do
        sent=$(date +%s.%N)
        read -r n silent unaccounted last_ms < <(round)
        if [[ "$n" == error ]]; then
            errors=$((errors + 1))
            printf '%6.1f s  the client failed: %s\n' "$(echo "$sent - $start" | bc)" "$(tail -n 1 "$work/round.err" | cut -c1-200)"
        else
            total_unaccounted=$((total_unaccounted + unaccounted)) total_silent=$((total_silent + silent))
            printf '%6.1f s  %s answered, %s no response, %s unaccounted (last reply at %s ms)\n' \
                "$(echo "$sent - $start" | bc)" "$n" "$silent" "$unaccounted" "$last_ms"
        fi
        if [[ "$n" != "$count" && -z "$first_failure" ]]; then first_failure=$sent; fi
        if [[ "$n" == "$count" && -n "$first_failure" ]]; then
            outage="$(echo "$(date +%s.%N) - $first_failure" | bc)"
            echo "outage: $outage s"
            break
        fi
        if (($(echo "$(date +%s.%N) - $start > ${STORM_LIMIT_SECS:-300}" | bc))); then
            echo "not recovered: $n of $count answer ${STORM_LIMIT_SECS:-300} s after the stop of member $stopped began"
            break
        fi
        if [[ "$n" == "$count" && -z "$first_failure" ]] && ! kill -0 "$stopper" 2>/dev/null; then
            outage=0
            echo "outage: none seen"
            break
        fi
    done
    wait "$stopper"
    stop_took="$(echo "$(date +%s.%N) - $start" | bc)"
    echo "requests over all rounds since the stop: $total_silent no response, $total_unaccounted unaccounted, $errors rounds failed outright"
    echo "emulator reconnections: $(($(cat "$work"/emulator-*.log | grep -c 'reconnected to the broker' || true) - reconnected_before))"
    # Over the whole run so far: set-ups the broker refused (retried), and connections that
    # reached lapin's channel limit (closed and replaced; before that fix, nodes stayed silent).
    echo "so far: $(cat "$work"/emulator-*.log | grep -c 'cannot restore a subscription' || true) set-ups refused," \
        "$(cat "$work"/emulator-*.log | grep -c 'maximum number of channels' || true) channel-limit errors," \
        "$(cat "$work"/emulator-*.log | grep -c 'can open no more channels' || true) connections replaced at the limit"
    all_unaccounted=$((all_unaccounted + total_unaccounted)) all_silent=$((all_silent + total_silent))
    all_errors=$((all_errors + errors))
    [[ -n "$outage" ]] || { echo "loss $loss: the nodes did not recover; stopping here"; break; }
    outages+=("$outage")
    echo "loss $loss: member $stopped, outage $outage s (stop-member and the recovery took $stop_took s together)"
    if ((losses > 1)); then
        "$root/bin/broker" start-member rabbitmq-cluster "$stopped" >/dev/null 2>&1
        read -r n silent unaccounted last_ms < <(round)
        echo "member $stopped started again: $n of $count answer, $silent no response, $unaccounted unaccounted"
    fi
done
echo "queues found lost under their consumer: $(cat "$work"/emulator-*.log | grep -c 'lost this queue under its consumer' || true)"
if ((${#outages[@]})); then
    echo "outages (s): ${outages[*]}"
    echo "median outage over ${#outages[@]} member losses: $(printf '%s\n' "${outages[@]}" | sort -g |
        awk '{v[NR] = $1} END {print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2)}') s"
fi
echo "over all losses: $all_silent no response, $all_unaccounted unaccounted, $all_errors rounds failed outright"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
