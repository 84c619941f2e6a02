#!/usr/bin/env python3
"""Baton's scale benchmark: thousands of emulated nodes on one machine, against the broker's limit.

Usage:
    integration/bench.py                       # N = 100, 1000, 5000; writes bench-results.json
    integration/bench.py --sizes 100,1000,5000,10000 --runs 15
    integration/bench.py --skip-build --sizes 1000

What it does, in one run (see docs/PERFORMANCE.md for the tables it prints):

1. starts the private RabbitMQ (bin/broker start rabbitmq) and release-builds baton, batond,
   baton-emulator and the rawamqp and load examples;
2. one real batond, in a collective of its own: resident memory at idle, then under sustained
   load from one client (examples/load.rs: directed rpcutil ping, 32 in flight) with the
   requests per second;
3. for each N: baton-emulator with N virtual nodes in a fresh collective with a registry
   stream (the virtual nodes register; --no-registry: without one, as before 2026-12-04), then
   - `baton ping` (broadcast) round trips: the client's publish-to-last-verified-reply
     (stats.last_reply_ms) and the whole command, median and p95 over --runs runs, with the CPU
     time the broker, the emulator and the client each spent per ping (where the time goes);
   - broadcast discovery (`baton discover`): discovery_ms and the whole command;
   - directed rpc to the N discovered nodes (`baton rpc rpcutil ping --dm stdin`);
   - replies one client verifies and accounts per second: N replies waiting in a named reply
     queue (`baton rpc ... --reply-to`), collected by `baton replies --request ID`;
   - the emulator's resident memory at idle and after the load, per virtual node;
   - with the emulator stopped, examples/rawamqp.rs doing the same broadcast round trip with
     lapin alone (no signing, no CBOR; the same acks and confirms as Baton, and --bare without
     them) to N raw responders, and the ratio of Baton's median to it.

With --console N it measures the web console instead (docs/PERFORMANCE.md, "The console at
fleet size"): baton-emulator with N virtual nodes that never register, a `baton console`
started after them (so its list comes from the inventories it asks for at start), and
integration/console/bench.mjs in Debian's headless Chromium timing, over --runs fresh pages, the
load of the whole list, its JSON, a search, a sort, a page turn and a filter in the CLI's
language. `--profile debug` uses the debug binaries (no release build).

With --real N1,N2 (e.g. --real 100,300) it also runs N real batond processes (one process,
one connection and one queue each) in a collective with a registry stream, and measures, in
one run: the whole `baton rpc rpcutil ping` (registry discovery plus the directed rpc), the
whole `baton ping` and `baton discover` (broadcasts that end at the last expected reply), a
directed ping of the same known set (`baton ping -I ...`, the floor), the same broadcasts once
the registry stream is deleted (the quiet window), and the nodes' resident memory.

With --idle RUNS it measures only one idle batond's memory (docs/PERFORMANCE.md, "Where
batond's idle memory goes"): each --variant LABEL=PATH[,KEY=VALUE...] (a batond binary and
environment variables; without any, the built one) started RUNS times, alternated, against the
same broker and configuration, read --idle-seconds after it logs "ready": VmRSS, RssAnon,
RssFile, Pss and threads from /proc/PID/status, resident kB by mapping from /proc/PID/smaps,
and with --pages which sections of the binary and which crates' code are resident
(/proc/PID/pagemap against `readelf -S` and `nm`). It builds only batond and examples/rawamqp.

Nothing here is asserted: it measures and prints. It is not part of bin/test.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target"))
# `--debug` measures the debug build instead (labelled as such): when a release build is out
# of reach on a busy machine, the relative figures (with and without the registry) still hold.
RELEASE = os.path.join(TARGET, "debug" if "--debug" in sys.argv else "release")
TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def broker_env():
    subprocess.run([os.path.join(REPO, "bin/broker"), "start", "rabbitmq"], check=True, stdout=sys.stderr)
    text = subprocess.run(
        [os.path.join(REPO, "bin/broker"), "env", "rabbitmq"], check=True, capture_output=True, text=True
    ).stdout
    env = {}
    for line in text.splitlines():
        match = re.match(r"export (\w+)=(.*)", line)
        if match:
            env[match.group(1)] = match.group(2).strip("'\"")
    status = subprocess.run(
        [os.path.join(REPO, "bin/broker"), "status", "rabbitmq"], capture_output=True, text=True
    ).stdout
    match = re.search(r"pid (\d+)", status)
    env["pid"] = int(match.group(1)) if match else None
    return env


def build():
    log("release build (baton, batond, baton-emulator, examples rawamqp and load)")
    subprocess.run(["cargo", "build", "--release", "--bins", "--examples"], cwd=REPO, check=True)


# The binaries measured: release by default, debug with --profile debug.
BINARIES = RELEASE


def binary(name):
    return os.path.join(BINARIES, name)


def example(name):
    return os.path.join(BINARIES, "examples", name)


def memory_kb(pid):
    """VmRSS and VmHWM (peak) of a process, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def cpu_seconds(pid):
    """User plus system CPU seconds a process has used so far (all its threads)."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except OSError:
        return 0.0


def percentile(samples, quantile):
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), int(-(-quantile * len(ordered) // 1))))
    return ordered[rank - 1]


def median(samples):
    return percentile(samples, 0.5)


class Workspace:
    """A fresh collective, its key, and configuration files for nodes and the client."""

    def __init__(self, root, env, name, registry=False):
        self.env = env
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.collective = f"{name}{uuid.uuid4().hex[:8]}"
        subprocess.run(
            [example("rawamqp"), "declare", "--url", env["BATON_RABBITMQ_ADMIN_URL"], "--collective", self.collective]
            + (["--registry"] if registry else []),
            check=True,
        )
        self.psk = os.path.join(self.dir, "psk")
        with open(self.psk, "w") as key:
            key.write(uuid.uuid4().hex + uuid.uuid4().hex)
        os.chmod(self.psk, 0o600)
        self.client = os.path.join(self.dir, "client.toml")
        with open(self.client, "w") as config:
            config.write(
                f'identity = "bench"\ncollective = "{self.collective}"\ndiscovery_timeout_secs = 10\n'
                f'timeout_secs = 30\n\n[broker]\nurls = ["{env["BATON_RABBITMQ_CLIENT_URL"]}"]\n\n'
                f'[security]\nscheme = "psk"\npsk_file = "{self.psk}"\n'
            )
        self.state = os.path.join(self.dir, "state")
        os.makedirs(self.state)

    def node_config(self, identity):
        path = os.path.join(self.dir, f"{identity}.toml")
        with open(path, "w") as config:
            # Node queues outlive their node for a week by default; thousands of them would
            # load the shared broker long after the run (they are also deleted at the end).
            config.write(
                f'identity = "{identity}"\ncollectives = ["{self.collective}"]\n\n'
                f'[broker]\nurls = ["{self.env["BATON_RABBITMQ_NODE_URL"]}"]\nnode_queue_expiry_secs = 60\n\n'
                f'[security]\nscheme = "psk"\npsk_file = "{self.psk}"\n'
                # The sustained-load test sends ~6,000 requests/s from one caller: above the
                # default window's share per caller (100,000 / 8 ids per ttl), which the node
                # rightly refuses with status 5. The bench measures throughput, not that policy.
                'replay_window = 4000000\n'
            )
        return path

    def delete_node_queues(self, count):
        subprocess.run(
            [example("rawamqp"), "delete-nodes", "--url", self.env["BATON_RABBITMQ_NODE_URL"],
             "--collective", self.collective, "--count", str(count)],
            check=False,
        )

    def baton(self, args, stdin=None):
        """Runs the CLI; returns (exit code, parsed JSON or None, wall seconds, CPU seconds)."""
        out_path = os.path.join(self.dir, "out.json")
        env = dict(os.environ, XDG_STATE_HOME=self.state)
        env.pop("BATON_LOG", None)
        with open(out_path, "w") as out:
            started = time.perf_counter()
            process = subprocess.Popen(
                [binary("baton"), "--config", self.client, *args],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.DEVNULL,
                env=env,
            )
            if stdin is not None:
                process.stdin.write(stdin.encode())
                process.stdin.close()
            _, status, usage = os.wait4(process.pid, 0)
            wall = time.perf_counter() - started
        with open(out_path) as out:
            text = out.read()
        try:
            document = json.loads(text)
        except ValueError:
            document = None
        return os.waitstatus_to_exitcode(status), document, wall, usage.ru_utime + usage.ru_stime


def start_emulator(workspace, count, extra=()):
    config = workspace.node_config("emulator")
    out = open(os.path.join(workspace.dir, f"emulator-{count}.out"), "w+")
    err = open(os.path.join(workspace.dir, f"emulator-{count}.log"), "w")
    process = subprocess.Popen(
        [binary("baton-emulator"), "--config", config, "--count", str(count), *extra], stdout=out, stderr=err
    )
    deadline = time.time() + 600
    while time.time() < deadline:
        out.seek(0)
        line = out.readline()
        if line.startswith("ready"):
            return process, line.strip()
        if process.poll() is not None:
            raise SystemExit(f"baton-emulator exited with {process.returncode}; see {err.name}")
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"baton-emulator did not become ready within 600 s; see {err.name}")


def stop(process):
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_queue_depth(env, queue, depth, timeout=120):
    """Polls rabbitmqctl until `queue` holds `depth` messages; returns the depth seen last."""
    deadline = time.time() + timeout
    seen = -1
    while time.time() < deadline:
        listing = subprocess.run(
            [env["BATON_RABBITMQ_CTL"], "-q", "list_queues", "-p", env["BATON_RABBITMQ_VHOST"], "name", "messages"],
            capture_output=True,
            text=True,
        ).stdout
        for line in listing.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                seen = int(parts[1])
        if seen >= depth:
            return seen
        time.sleep(0.5)
    return seen


def single_node(root, env, seconds):
    """One real batond: memory at idle and under load, and sustained requests per second."""
    workspace = Workspace(root, env, "single")
    config = workspace.node_config("real01")
    process = subprocess.Popen(
        [binary("batond"), "--config", config], stderr=open(os.path.join(workspace.dir, "batond.log"), "w")
    )
    try:
        for _ in range(100):
            code, _, _, _ = workspace.baton(["ping", "-I", "real01", "--json"])
            if code == 0:
                break
            time.sleep(0.2)
        time.sleep(3)
        idle = memory_kb(process.pid)
        log(f"batond idle: {idle}")
        load = subprocess.run(
            [example("load"), "--config", workspace.client, "--node", "real01", "--concurrency", "32",
             "--seconds", str(seconds)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(load.stdout)
        loaded = memory_kb(process.pid)
        log(f"batond under load: {loaded}; {result}")
        return {"idle_kb": idle["VmRSS"], "load_peak_kb": loaded["VmHWM"], "load": result}
    finally:
        stop(process)


def measure(root, env, count, runs, bare, registry):
    workspace = Workspace(root, env, f"n{count}", registry=registry)
    log(f"N={count}: starting the emulator in collective {workspace.collective}")
    emulator, ready = start_emulator(workspace, count)
    result = {"n": count, "ready": ready, "registry": registry}
    try:
        time.sleep(2)
        result["emulator_idle_kb"] = memory_kb(emulator.pid)["VmRSS"]
        workspace.baton(["ping", "--json"])  # warm-up, not counted

        pings = []
        broker_cpu, node_cpu, client_cpu = 0.0, 0.0, 0.0
        for run in range(runs):
            broker_before, node_before = cpu_seconds(env["pid"]), cpu_seconds(emulator.pid)
            code, document, wall, cpu = workspace.baton(["ping", "--json"])
            broker_cpu += cpu_seconds(env["pid"]) - broker_before
            node_cpu += cpu_seconds(emulator.pid) - node_before
            client_cpu += cpu
            stats = (document or {}).get("stats", {})
            pings.append(
                {"code": code, "replies": len((document or {}).get("replies", [])),
                 "last_reply_ms": stats.get("last_reply_ms"), "first_reply_ms": stats.get("first_reply_ms"),
                 "wall_ms": wall * 1000}
            )
            time.sleep(0.3)
        round_trips = [ping["last_reply_ms"] for ping in pings if ping["last_reply_ms"] is not None]
        result["ping"] = {
            "runs": pings,
            "complete_runs": sum(1 for ping in pings if ping["replies"] == count),
            "median_ms": median(round_trips),
            "p95_ms": percentile(round_trips, 0.95),
            "first_reply_median_ms": median([p["first_reply_ms"] for p in pings if p["first_reply_ms"] is not None]),
            "wall_median_ms": median([ping["wall_ms"] for ping in pings]),
            "wall_p95_ms": percentile([ping["wall_ms"] for ping in pings], 0.95),
            "cpu_ms_per_ping": {
                "broker": broker_cpu * 1000 / runs,
                "emulator": node_cpu * 1000 / runs,
                "client": client_cpu * 1000 / runs,
            },
        }
        log(f"N={count}: ping median {result['ping']['median_ms']} ms, p95 {result['ping']['p95_ms']} ms")

        discoveries = []
        nodes = []
        for _ in range(3):
            code, document, wall, _ = workspace.baton(["discover", "--json"])
            document = document or {}
            nodes = document.get("nodes", nodes)
            discoveries.append({"found": len(document.get("nodes", [])),
                                "discovery_ms": document.get("stats", {}).get("discovery_ms"),
                                "wall_ms": wall * 1000})
        result["discovery"] = {
            "runs": discoveries,
            "median_ms": median([d["discovery_ms"] for d in discoveries if d["discovery_ms"] is not None]),
            "found": [d["found"] for d in discoveries],
        }
        node_list = "\n".join(node if isinstance(node, str) else node.get("node", "") for node in nodes)

        directed = []
        for _ in range(3):
            node_before = cpu_seconds(emulator.pid)
            code, document, wall, cpu = workspace.baton(["rpc", "rpcutil", "ping", "--dm", "stdin", "--json"],
                                                        stdin=node_list)
            stats = (document or {}).get("stats", {})
            directed.append({"code": code, "ok": stats.get("ok"), "last_reply_ms": stats.get("last_reply_ms"),
                             "total_ms": stats.get("total_ms"), "wall_ms": wall * 1000, "client_cpu_ms": cpu * 1000,
                             "emulator_cpu_ms": (cpu_seconds(emulator.pid) - node_before) * 1000})
        result["directed"] = {
            "runs": directed,
            "median_ms": median([d["last_reply_ms"] for d in directed if d["last_reply_ms"] is not None]),
        }
        log(f"N={count}: directed rpc median {result['directed']['median_ms']} ms")

        name = f"bench{uuid.uuid4().hex[:8]}"
        code, document, _, _ = workspace.baton(
            ["rpc", "rpcutil", "ping", "--dm", "stdin", "--reply-to", name, "--json"], stdin=node_list
        )
        request_id = (document or {}).get("request_id")
        queue = f"{workspace.collective}.reply.{name}"
        depth = wait_for_queue_depth(env, queue, len(nodes))
        code, document, wall, cpu = workspace.baton(["replies", name, "--request", str(request_id), "--json"])
        stats = (document or {}).get("stats", {})
        total_ms = stats.get("total_ms") or float("nan")
        result["replies"] = {
            "queued": depth,
            "collected": stats.get("replies"),
            "ok": stats.get("ok"),
            "total_ms": total_ms,
            "wall_ms": wall * 1000,
            "client_cpu_ms": cpu * 1000,
            "per_second": (stats.get("replies") or 0) / (total_ms / 1000) if total_ms else float("nan"),
        }
        log(f"N={count}: replies {result['replies']}")

        memory = memory_kb(emulator.pid)
        result["emulator_loaded_kb"] = memory["VmRSS"]
        result["emulator_peak_kb"] = memory["VmHWM"]
    finally:
        stop(emulator)
        workspace.delete_node_queues(count)

    time.sleep(2)
    result["raw"] = raw(workspace, env, count, runs, bare=False)
    if bare:
        result["raw_bare"] = raw(workspace, env, count, runs, bare=True)
    result["ratio"] = result["ping"]["median_ms"] / result["raw"]["median_ms"]
    log(f"N={count}: raw median {result['raw']['median_ms']:.1f} ms; ratio {result['ratio']:.2f}")
    shutil.rmtree(workspace.state, ignore_errors=True)
    return result


def raw(workspace, env, count, runs, bare):
    args = [example("rawamqp"), "roundtrip", "--node-url", env["BATON_RABBITMQ_NODE_URL"],
            "--client-url", env["BATON_RABBITMQ_CLIENT_URL"], "--collective", workspace.collective,
            "--count", str(count), "--runs", str(runs + 1)]
    if bare:
        args.append("--bare")
    if env.get("pid"):
        args += ["--broker-pid", str(env["pid"])]
    output = json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)
    # The first run warms up, as for Baton.
    samples = output["round_trips_ms"][1:]
    broker_cpu = output["broker_cpu_ms"][1:]
    return {"median_ms": median(samples), "p95_ms": percentile(samples, 0.95), "short_runs": output["short_runs"],
            "runs": samples, "broker_cpu_ms_per_run": sum(broker_cpu) / max(1, len(broker_cpu))}


def real_nodes(root, env, count, runs):
    """N real batond processes; whole-command times with and without the registry."""
    workspace = Workspace(root, env, f"real{count}", registry=True)
    identities = [f"real-{index:05}" for index in range(1, count + 1)]
    log(f"real N={count}: starting {count} batond in collective {workspace.collective}")
    processes = []
    result = {"n": count}
    try:
        for identity in identities:
            processes.append(subprocess.Popen(
                [binary("batond"), "--config", workspace.node_config(identity)],
                stderr=open(os.path.join(workspace.dir, f"{identity}.log"), "w"),
            ))
        directed = [arg for identity in identities for arg in ("-I", identity)]
        deadline = time.time() + 300
        while True:
            code, document, _, _ = workspace.baton(["ping", "--json", *directed])
            if code == 0:
                break
            if time.time() > deadline:
                raise SystemExit(f"the {count} batond did not all answer within 300 s: {document}")
            time.sleep(1)
        time.sleep(3)
        rss = [memory_kb(process.pid)["VmRSS"] for process in processes]
        result["rss_kb"] = {"median": median(rss), "max": max(rss)}

        def series(args, key):
            workspace.baton(args)  # warm-up, not counted
            samples = []
            for _ in range(runs):
                code, document, wall, _ = workspace.baton(args)
                document = document or {}
                samples.append({"code": code, "wall_ms": wall * 1000, "counted": len(document.get(key) or [])})
                time.sleep(0.2)
            walls = [sample["wall_ms"] for sample in samples]
            return {"median_ms": median(walls), "p95_ms": percentile(walls, 0.95), "runs": samples,
                    "complete_runs": sum(1 for sample in samples if sample["code"] == 0 and sample["counted"] == count)}

        result["rpc"] = series(["rpc", "rpcutil", "ping", "--json"], "replies")
        result["ping"] = series(["ping", "--json"], "replies")
        result["discover"] = series(["discover", "--json"], "nodes")
        result["directed"] = series(["ping", "--json", *directed], "replies")
        result["discover_ratio"] = result["discover"]["median_ms"] / result["directed"]["median_ms"]
        subprocess.run(
            [example("rawamqp"), "delete-registry", "--url", env["BATON_RABBITMQ_ADMIN_URL"],
             "--collective", workspace.collective],
            check=True,
        )
        result["rpc_quiet"] = series(["rpc", "rpcutil", "ping", "--json"], "replies")
        result["ping_quiet"] = series(["ping", "--json"], "replies")
        result["discover_quiet"] = series(["discover", "--json"], "nodes")
        log(f"real N={count}: " + ", ".join(
            f"{name} {result[name]['median_ms']:.0f} ms ({result[name]['complete_runs']}/{runs})"
            for name in ("rpc", "ping", "discover", "directed", "rpc_quiet", "ping_quiet", "discover_quiet")))
        return result
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(
            [example("rawamqp"), "delete-registry", "--url", env["BATON_RABBITMQ_ADMIN_URL"],
             "--collective", workspace.collective],
            check=False, stderr=subprocess.DEVNULL,
        )


def real_table(results, runs):
    lines = ["", f"| real batond N | whole `baton rpc rpcutil ping` | `baton ping` | `baton discover` | "
             f"directed `baton ping -I ...` (same set) | discover / directed | without the registry: rpc, ping, "
             f"discover | complete runs (of {runs}) | batond RSS median (max) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        complete = "/".join(str(r[name]["complete_runs"]) for name in ("rpc", "ping", "discover", "directed"))
        lines.append(
            f"| {r['n']} | {r['rpc']['median_ms']:.0f} ms (p95 {r['rpc']['p95_ms']:.0f}) | "
            f"{r['ping']['median_ms']:.0f} ms | {r['discover']['median_ms']:.0f} ms | "
            f"{r['directed']['median_ms']:.0f} ms | {r['discover_ratio']:.2f}x | "
            f"{r['rpc_quiet']['median_ms']:.0f}, {r['ping_quiet']['median_ms']:.0f}, "
            f"{r['discover_quiet']['median_ms']:.0f} ms | {complete} | "
            f"{r['rss_kb']['median'] / 1024:.1f} MB ({r['rss_kb']['max'] / 1024:.1f}) |"
        )
    return "\n".join(lines)


def table(single, results, machine):
    lines = [f"Machine: {machine}", ""]
    lines.append("| N | ping median | ping p95 | whole `baton ping` median | raw AMQP median (p95) | ratio | "
                 "raw bare median | complete runs |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for r in results:
        bare = r.get("raw_bare", {}).get("median_ms")
        lines.append(
            f"| {r['n']}{' (registry)' if r.get('registry') else ' (no registry)'} | "
            f"{r['ping']['median_ms']:.1f} ms | {r['ping']['p95_ms']:.1f} ms | "
            f"{r['ping']['wall_median_ms']:.0f} ms | {r['raw']['median_ms']:.1f} ms ({r['raw']['p95_ms']:.1f}) | "
            f"{r['ratio']:.2f}x | {'' if bare is None else f'{bare:.1f} ms'} | "
            f"{r['ping']['complete_runs']}/{len(r['ping']['runs'])} |"
        )
    lines += ["", "| N | CPU per ping: broker (raw: broker) | emulator (N nodes) | client | discovery (median) | "
              "directed rpc to N (median) | replies verified+accounted/s |", "|---|---|---|---|---|---|---|"]
    for r in results:
        cpu = r["ping"]["cpu_ms_per_ping"]
        lines.append(
            f"| {r['n']} | {cpu['broker']:.0f} ms ({r['raw']['broker_cpu_ms_per_run']:.0f} ms) | "
            f"{cpu['emulator']:.0f} ms | {cpu['client']:.0f} ms | "
            f"{r['discovery']['median_ms']:.0f} ms (found {min(r['discovery']['found'])}) | "
            f"{r['directed']['median_ms']:.0f} ms | {r['replies']['per_second']:.0f} "
            f"({r['replies']['collected']} in {r['replies']['total_ms']} ms) |"
        )
    # What one more virtual node costs: the emulator's memory above one idle batond (the same
    # binary, runtime and agents), divided by N.
    base_kb = single["idle_kb"] if single else 0
    lines += ["", "| N | emulator RSS idle | after the load (peak) | per virtual node, idle (above one batond) |",
              "|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['n']} | {r['emulator_idle_kb'] / 1024:.1f} MB | {r['emulator_loaded_kb'] / 1024:.1f} MB "
            f"({r['emulator_peak_kb'] / 1024:.1f} MB) | {(r['emulator_idle_kb'] - base_kb) / r['n']:.1f} kB |"
        )
    if single:
        load = single["load"]
        lines += ["", "| batond (one real node) | value |", "|---|---|",
                  f"| RSS idle | {single['idle_kb'] / 1024:.1f} MB |",
                  f"| RSS peak under load | {single['load_peak_kb'] / 1024:.1f} MB |",
                  f"| sustained requests/s, one client, 32 in flight | {load['per_second']:.0f} "
                  f"(median {load['median_ms']:.2f} ms, p95 {load['p95_ms']:.2f} ms, {load['failures']} failures) |"]
    return "\n".join(lines)


def console_bench(root, env, count, runs):
    """The console listing `count` emulated nodes: load, search, sort, page and filter times."""
    workspace = Workspace(root, env, "console")
    emulator, ready = start_emulator(workspace, count, ["--no-registration"])
    log(f"emulator: {ready}")
    console = None
    try:
        console_log = os.path.join(workspace.dir, "console.log")
        env_console = dict(os.environ, BATON_LOG="info,lapin=error", XDG_STATE_HOME=workspace.state)
        console = subprocess.Popen(
            [binary("baton"), "--config", workspace.client, "console", "--listen", "127.0.0.1:0",
             "--database", os.path.join(workspace.dir, "console.sqlite")],
            stdout=subprocess.DEVNULL, stderr=open(console_log, "w"), env=env_console,
        )
        deadline = time.time() + 120
        url = None
        while time.time() < deadline and url is None:
            with open(console_log) as text:
                match = re.search(r"listening on (\S+)", text.read())
            url = match.group(1).rstrip("/") if match else None
            if url is None:
                if console.poll() is not None:
                    raise SystemExit(f"baton console exited with {console.returncode}; see {console_log}")
                time.sleep(0.2)
        if url is None:
            raise SystemExit(f"baton console did not listen within 120 s; see {console_log}")
        log(f"console at {url}; timing {runs} page loads in Chromium")
        measured = subprocess.run(
            ["node", os.path.join(REPO, "integration/console/bench.mjs")],
            cwd=os.path.join(REPO, "integration/console"),
            env=dict(os.environ, BATON_CONSOLE_URL=url, BATON_BENCH_COUNT=str(count), BATON_BENCH_RUNS=str(runs)),
            check=True, capture_output=True, text=True,
        )
        document = json.loads(measured.stdout)
    finally:
        if console is not None:
            stop(console)
        stop(emulator)
        workspace.delete_node_queues(count)
    return {
        name: {"median_ms": median(values), "p95_ms": percentile(values, 0.95), "samples": values}
        for name, values in document["samples"].items()
    }


CONSOLE_STEPS = [
    ("load", "open the page until all nodes are known and the first page is drawn"),
    ("nodes_api", "GET /api/nodes (every node, with its facts, as JSON)"),
    ("search", "type a search (10 of them match) until the next frame"),
    ("clear_search", "clear the search (all of them again)"),
    ("sort", "sort by last seen"),
    ("next_page", "turn to the next page"),
    ("filter", "apply an identity filter (/^emu-00[0-4]/, 499 nodes) until the list is redrawn"),
]


def console_table(count, results, machine):
    lines = [f"Console with {count} emulated nodes ({machine}):", "",
             "| step | median | p95 |", "|---|---|---|"]
    for name, what in CONSOLE_STEPS:
        result = results[name]
        lines.append(f"| {what} | {result['median_ms']:.0f} ms | {result['p95_ms']:.0f} ms |")
    return "\n".join(lines)


def machine_description():
    cores = os.cpu_count()
    with open("/proc/meminfo") as meminfo:
        total_gib = int(meminfo.readline().split()[1]) / 1024 / 1024
    load = os.getloadavg()
    return (f"{cores} cores, {total_gib:.0f} GiB, load average before the run "
            f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, {time.strftime('%Y-%m-%d %H:%M')}")


# --- One idle batond's memory, mapping by mapping (docs/PERFORMANCE.md, "Where batond's idle
# memory goes"). Runs only batond and examples/rawamqp (to declare the collective).

def status_fields(pid):
    """The memory and thread lines of /proc/PID/status, in kB (Threads as a count)."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                values[key] = int(rest.split()[0])
    with open(f"/proc/{pid}/smaps_rollup") as rollup:
        for line in rollup:
            key, _, rest = line.partition(":")
            if key == "Pss":
                values["Pss"] = int(rest.split()[0])
    return values


def smaps_by_mapping(pid, executable):
    """Resident kB per kind of mapping: the binary's segments by permission, each shared library,
    the heap, thread stacks (anonymous mappings next to a guard page) and other anonymous memory."""
    groups = {}
    name, perms, previous_guard = None, None, False
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                perms = fields[1]
                path = fields[5] if len(fields) > 5 else ""
                if os.path.realpath(path) == os.path.realpath(executable) if path.startswith("/") else False:
                    name = f"batond {perms}"
                elif path.startswith("/"):
                    name = os.path.basename(path)
                elif path:
                    name = path
                else:
                    # A thread's stack is an anonymous rw mapping right above its guard page (---p).
                    name = "thread stacks" if previous_guard and perms.startswith("rw") else "other anonymous"
                previous_guard = perms.startswith("---") and not path
            elif fields and fields[0] == "Rss:":
                groups[name] = groups.get(name, 0) + int(fields[1])
    return groups


def elf_sections(executable):
    """(name, start, end) of the binary's allocated sections, from readelf."""
    sections = []
    text = subprocess.run(["readelf", "-SW", executable], capture_output=True, text=True, check=True).stdout
    for line in text.splitlines():
        match = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+[0-9a-f]+\s+([0-9a-f]+)\s+\S+\s+(\S*A\S*)", line)
        if match and int(match.group(2), 16):
            start, size = int(match.group(2), 16), int(match.group(3), 16)
            sections.append((match.group(1), start, start + size))
    return sections


def symbol_owner(name):
    """The crate a demangled Rust symbol belongs to (its first path segment), or a C library."""
    match = re.match(r"^(?:<|&|\(|dyn |mut |impl )*([A-Za-z_][A-Za-z0-9_]*)::", name)
    if match:
        return match.group(1)
    if name.startswith(("aws_lc", "aws-lc", "OPENSSL", "EVP_", "BN_", "EC_", "SHA", "RSA_", "X509")):
        return "aws-lc (C)"
    return "other symbols"


def resident_pages(pid, executable):
    """Which pages of the binary's file mappings are resident: (load base, set of page offsets
    relative to the base), from /proc/PID/pagemap (bit 63: present)."""
    regions, base = [], None
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 and os.path.realpath(fields[5]) == os.path.realpath(executable):
                start, end = (int(value, 16) for value in fields[0].split("-"))
                if base is None:
                    base = start - int(fields[2], 16)
                regions.append((start, end))
    page = os.sysconf("SC_PAGE_SIZE")
    present = set()
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for start, end in regions:
            pagemap.seek(start // page * 8)
            data = pagemap.read((end - start) // page * 8)
            for index in range(len(data) // 8):
                entry = int.from_bytes(data[index * 8:index * 8 + 8], "little")
                if entry >> 63:
                    present.add(start - base + index * page)
    return base, present, page


def page_profile(pid, executable, top=25):
    """Resident kB of the binary by section, and the resident code by crate (bytes of the
    symbols that lie on resident pages), so that one sees which code start-up and idle touch."""
    _, present, page = resident_pages(pid, executable)
    sections = {}
    for name, start, end in elf_sections(executable):
        pages = range(start // page * page, end, page)
        resident = sum(1 for address in pages if address in present)
        sections[name] = {"size_kb": (end - start) / 1024, "resident_kb": resident * page / 1024}
    crates = {}
    symbols = subprocess.run(["nm", "--defined-only", "-S", "-C", executable], capture_output=True, text=True).stdout
    for line in symbols.splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or parts[2] not in "tTrRdD":
            continue
        start, size = int(parts[0], 16), int(parts[1], 16)
        owner = symbol_owner(parts[3])
        entry = crates.setdefault(owner, {"size_kb": 0.0, "resident_kb": 0.0})
        entry["size_kb"] += size / 1024
        address = start
        while address < start + size:
            chunk = min(start + size, (address // page + 1) * page) - address
            if address // page * page in present:
                entry["resident_kb"] += chunk / 1024
            address += chunk
    ranked = sorted(crates.items(), key=lambda item: -item[1]["resident_kb"])[:top]
    return {"sections": sections, "crates": dict(ranked)}


def drop_from_page_cache(path):
    """Evicts `path` from the page cache, so that a start reads it from disk as a node does
    after boot. How the file's pages sit in the cache decides how much of it a start maps (the
    kernel maps a whole window or large folio around each touched page): the same binary
    measured 7.98 and 8.54 MiB as two `cp` copies. Read back from disk, every start sees the
    same layout."""
    os.sync()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def idle_rss(root, env, variants, runs, seconds, profile):
    """Each variant (label, batond path, extra environment) started `runs` times, alternating,
    against the same broker: memory `seconds` after the node logs "ready"."""
    workspace = Workspace(root, env, "idle")
    config = workspace.node_config("idle01")
    results = {label: {"path": path, "env": extra, "runs": []} for label, path, extra in variants}
    for run in range(runs):
        for label, path, extra in variants:
            log_path = os.path.join(workspace.dir, f"batond-{run}.log")
            drop_from_page_cache(path)
            process = subprocess.Popen(
                [path, "--config", config], stderr=open(log_path, "w"),
                env={key: value for key, value in dict(os.environ, **extra).items() if key != "BATON_LOG"},
            )
            try:
                deadline = time.time() + 60
                while time.time() < deadline:
                    with open(log_path) as log_file:
                        if re.search(r"\bready\b", log_file.read()):
                            break
                    if process.poll() is not None:
                        raise SystemExit(f"{path} exited with {process.returncode}; see {log_path}")
                    time.sleep(0.1)
                else:
                    raise SystemExit(f"{path} did not log ready within 60 s; see {log_path}")
                time.sleep(seconds)
                sample = status_fields(process.pid)
                sample["mappings"] = smaps_by_mapping(process.pid, path)
                if profile and run == runs - 1:
                    results[label]["pages"] = page_profile(process.pid, path)
                results[label]["runs"].append(sample)
                log(f"{label} run {run + 1}: VmRSS {sample['VmRSS']} kB, RssAnon {sample['RssAnon']} kB, "
                    f"RssFile {sample['RssFile']} kB, {sample['Threads']} threads")
            finally:
                stop(process)
    for result in results.values():
        for key in ("VmRSS", "RssAnon", "RssFile", "Pss", "Threads"):
            result[key] = median([sample[key] for sample in result["runs"]])
    return results


def idle_table(results, machine):
    lines = [f"Idle batond ({machine}); medians over the runs:", "",
             "| variant | VmRSS | RssAnon | RssFile | Pss | threads | VmRSS of each run |", "|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        each = " / ".join(f"{sample['VmRSS'] / 1024:.2f}" for sample in r["runs"])
        lines.append(f"| {label} | {r['VmRSS'] / 1024:.2f} MB | {r['RssAnon'] / 1024:.2f} MB | "
                     f"{r['RssFile'] / 1024:.2f} MB | {r['Pss'] / 1024:.2f} MB | {r['Threads']} | {each} |")
    for label, r in results.items():
        mappings = r["runs"][-1]["mappings"]
        lines += ["", f"{label}, resident by mapping (last run):", "", "| mapping | resident |", "|---|---|"]
        for name, kb in sorted(mappings.items(), key=lambda item: -item[1]):
            if kb:
                lines.append(f"| {name} | {kb} kB |")
        pages = r.get("pages")
        if pages:
            lines += ["", f"{label}, the binary's sections (resident of size):", "", "| section | resident | size |",
                      "|---|---|---|"]
            for name, s in pages["sections"].items():
                if s["resident_kb"]:
                    lines.append(f"| {name} | {s['resident_kb']:.0f} kB | {s['size_kb']:.0f} kB |")
            lines += ["", f"{label}, code and data by crate (bytes of symbols on resident pages, of their size):", "",
                      "| crate | resident | size |", "|---|---|---|"]
            for name, s in pages["crates"].items():
                lines.append(f"| {name} | {s['resident_kb']:.0f} kB | {s['size_kb']:.0f} kB |")
    return "\n".join(lines)


def parse_variant(text):
    """LABEL=PATH[,KEY=VALUE...]: a batond binary and environment variables to run it with."""
    label, _, rest = text.partition("=")
    path, *pairs = rest.split(",")
    return label, os.path.abspath(path) if path else binary("batond"), dict(pair.split("=", 1) for pair in pairs)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000", help="virtual node counts, comma-separated")
    parser.add_argument("--runs", type=int, default=10, help="ping runs per size (median and p95 over these)")
    parser.add_argument("--load-seconds", type=float, default=5.0, help="length of the sustained-load test")
    parser.add_argument("--skip-build", action="store_true", help="use the release binaries as they are")
    parser.add_argument("--skip-single", action="store_true", help="skip the single batond measurements")
    parser.add_argument("--no-bare", action="store_true", help="skip the raw run without acks and confirms")
    parser.add_argument("--no-registry", action="store_true",
                        help="emulated sizes without a registry stream (broadcasts end after a quiet window)")
    parser.add_argument("--debug", action="store_true", help="use the debug binaries (implies --skip-build)")
    parser.add_argument("--real", default="", help="real batond counts, comma-separated (e.g. 100,300)")
    parser.add_argument("--out", default=os.path.join(REPO, "bench-results.json"), help="JSON results file")
    parser.add_argument("--console", type=int, metavar="N", help="measure the web console listing N nodes instead")
    parser.add_argument("--profile", choices=["release", "debug"], default="release", help="which binaries to run")
    parser.add_argument("--idle", type=int, metavar="RUNS",
                        help="measure only one idle batond's memory, RUNS starts of each --variant, alternated")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH[,KEY=VALUE...]",
                        help="with --idle: a batond binary (empty PATH: the built one) and its environment; repeatable")
    parser.add_argument("--idle-seconds", type=float, default=6.0, help="with --idle: wait after \"ready\"")
    parser.add_argument("--pages", action="store_true",
                        help="with --idle: which sections and crates of the binary are resident (pagemap, nm)")
    args = parser.parse_args()

    global BINARIES, RELEASE
    if args.debug:
        args.profile = "debug"
    BINARIES = RELEASE = os.path.join(TARGET, args.profile)
    machine = machine_description() + f", {args.profile} build"
    env = broker_env()
    if not args.skip_build and not args.debug:
        profile = ["--release"] if args.profile == "release" else []
        if args.idle:
            log(f"{args.profile} build (batond, example rawamqp)")
            subprocess.run(["cargo", "build", *profile, "--bin", "batond", "--example", "rawamqp"], cwd=REPO,
                           check=True)
        elif args.console:
            log(f"{args.profile} build (baton, baton-emulator, example rawamqp)")
            subprocess.run(["cargo", "build", *profile, "--bin", "baton", "--bin", "baton-emulator",
                            "--example", "rawamqp"], cwd=REPO, check=True)
        else:
            build()
    root = tempfile.mkdtemp(prefix="baton-bench-")
    if args.idle:
        try:
            variants = [parse_variant(text) for text in args.variant] or [("as built", binary("batond"), {})]
            results = idle_rss(root, env, variants, args.idle, args.idle_seconds, args.pages)
            with open(args.out, "w") as out:
                json.dump({"machine": machine, "idle": results}, out, indent=2)
            print(idle_table(results, machine))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    if args.console:
        try:
            results = console_bench(root, env, args.console, args.runs)
            with open(args.out, "w") as out:
                json.dump({"machine": machine, "console": {"count": args.console, "steps": results}}, out, indent=2)
            print(console_table(args.console, results, machine))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return
    try:
        single = None if args.skip_single else single_node(root, env, args.load_seconds)
        results, real = [], []
        for count in [int(size) for size in args.real.split(",") if size]:
            real.append(real_nodes(root, env, count, args.runs))
            with open(args.out, "w") as out:
                json.dump({"machine": machine, "single": single, "real": real}, out, indent=2)
        for count in [int(size) for size in args.sizes.split(",") if size]:
            results.append(measure(root, env, count, args.runs, bare=not args.no_bare, registry=not args.no_registry))
            with open(args.out, "w") as out:
                json.dump({"machine": machine, "single": single, "real": real, "sizes": results}, out, indent=2)
        print(table(single, results, machine) if results else f"Machine: {machine}")
        if real:
            print(real_table(real, args.runs))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
