"""Every issue #9 benchmark in one command: a table of figures, each with its same-run
baseline, the peer where there is one, the target and a verdict.

    .venv/bin/python bench/run_all.py [--runs 3] [--quick] [--only peers,storm,ingest,device]
    make bench

1. peers   the team harness (../shared/peers/bench_pipeline.py) on Haven (bench/
           peers_adapter.py, 1 worker) and Node-RED, interleaved, ``--runs`` times:
           press -> first POST against raw MQTT, fan-out 20 @250 ms against serial
           sending, the 5,000-alarm burst, RSS. Skipped (said so) without the harness.
2. storm   1,000 alarms within 1 s with 1, 2 and 4 workers (bench/storm_bench.py).
3. ingest  10,000 devices' heartbeats with 1, 2 and 4 workers, live and drained from
           the broker (bench/ingest_bench.py).
4. device  firmware idle RSS/CPU over 60 s (bench/device_bench.py, printed as is).

Each cell is the median over ``--runs`` (min-max when they differ). The 1-minute load
average before each part is printed: this box is shared, and a busy box makes every
latency worse. The table is also written to bench/results/run-<stamp>.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest_bench import drain, ingest  # noqa: E402
from bench.peers_adapter import PEERS_DIR  # noqa: E402
from bench.procs import hub_python  # noqa: E402
from bench.storm_bench import MAX_CONNECTIONS, MAX_RSS_MB, storm  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: (load average to wait for, at most seconds): set from the command line.
QUIET = (1.5, 0.0)
#: What each part printed (with the load average it started at), for the results file.
LOG: list[str] = []


def say(text: str) -> None:
    print(text, flush=True)
    LOG.append(text)


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def wait_quiet(below: float, max_s: float) -> None:
    """Wait (at most ``max_s``) until the 1-minute load average is under ``below``: other
    work on a 2-core box shows up as latency in every figure."""
    deadline = time.monotonic() + max_s
    if os.getloadavg()[0] >= below:
        print(f"    waiting up to {max_s:.0f} s for the box to quieten ({load()})", flush=True)
    while os.getloadavg()[0] >= below and time.monotonic() < deadline:
        time.sleep(5)


def cell(values: list, fmt: str = "{:.3f}") -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    med = statistics.median(values)
    if len(values) == 1 or min(values) == max(values):
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def med(values: list):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def get(d: dict, path: str):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def verdict(ok: bool | None, detail: str = "") -> str:
    if ok is None:
        return "n/a"
    return ("met" if ok else "NOT met") + (f" ({detail})" if detail else "")


def run_harness(label: str, adapter_args: list[str], out: Path, quick: bool) -> dict:
    argv = [hub_python(), str(PEERS_DIR / "bench_pipeline.py"), "--out", str(out),
            "--no-samples", *(["--quick"] if quick else []), *adapter_args]
    wait_quiet(*QUIET)
    say(f"--- harness: {label} ({load()})")
    with open(out.with_suffix(".txt"), "w") as log:
        subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        result = json.loads(out.read_text())
    except (OSError, ValueError):
        result = {"error": f"no result; see {out.with_suffix('.txt')}"}
    if result.get("error"):
        say(f"    {label} FAILED: {result['error']} (log {out.with_suffix('.txt')})")
    say(f"    p50 {get(result, 'pipeline.latency.p50_ms')} p99 "
        f"{get(result, 'pipeline.latency.p99_ms')} ms (raw MQTT p50 "
        f"{get(result, 'raw_mqtt.latency.p50_ms')}); fan-out 20th "
        f"{get(result, 'fanout.nth_post_ms_median')} ms; burst "
        f"{get(result, 'throughput.alarms_per_s')} alarms/s")
    return result


def peers_rows(runs: int, quick: bool, raw: Path) -> list[tuple]:
    haven, peer = [], []
    for i in range(1, runs + 1):
        haven.append(run_harness(f"haven run {i}", [
            "--adapter", f"{ROOT}/bench/peers_adapter.py:HavenAdapter",
            "--adapter-opt", "workers=1"], raw / f"haven-1w-run{i}.json", quick))
        peer.append(run_harness(f"node-red run {i}", ["--adapter", "nodered"],
                                raw / f"nodered-run{i}.json", quick))

    def col(results, path):
        return [get(r, path) for r in results]

    h50, p50 = med(col(haven, "pipeline.latency.p50_ms")), med(col(peer, "pipeline.latency.p50_ms"))
    h99, p99 = med(col(haven, "pipeline.latency.p99_ms")), med(col(peer, "pipeline.latency.p99_ms"))
    hrate = med(col(haven, "throughput.alarms_per_s"))
    prate = med(col(peer, "throughput.alarms_per_s"))
    nth = med(col(haven, "fanout.nth_post_ms_median"))
    answered = med(col(haven, "fanout.all_responses_ms_median"))
    conns = med(col(haven, "throughput.http_connections"))
    lost = sum((get(r, "pipeline.lost") or 0) + (get(r, "throughput.lost") or 0) for r in haven)
    dup = sum((get(r, "pipeline.duplicates") or 0) + (get(r, "throughput.duplicates") or 0)
              for r in haven)
    rows = [
        ("press -> first POST p50 (ms)", cell(col(haven, "pipeline.latency.p50_ms")),
         "raw MQTT " + cell(col(haven, "raw_mqtt.latency.p50_ms")),
         cell(col(peer, "pipeline.latency.p50_ms")), "<= 1.0 and < peer",
         verdict(None if h50 is None or p50 is None else h50 <= 1.0 and h50 < p50)),
        ("press -> first POST p99 (ms)", cell(col(haven, "pipeline.latency.p99_ms")),
         "raw MQTT " + cell(col(haven, "raw_mqtt.latency.p99_ms")),
         cell(col(peer, "pipeline.latency.p99_ms")), "<= 2.5 and < peer",
         verdict(None if h99 is None or p99 is None else h99 <= 2.5 and h99 < p99)),
        ("fan-out 20 @250 ms: 20th POST (ms)", cell(col(haven, "fanout.nth_post_ms_median"), "{:.1f}"),
         "serial " + cell(col(haven, "fanout.serial_measured.nth_post_ms"), "{:.0f}"),
         cell(col(peer, "fanout.nth_post_ms_median"), "{:.1f}"), "<= 15",
         verdict(None if nth is None else nth <= 15)),
        ("fan-out: all 20 answered (ms)", cell(col(haven, "fanout.all_responses_ms_median"), "{:.1f}"),
         "serial " + cell(col(haven, "fanout.serial_measured.all_responses_ms"), "{:.0f}"),
         cell(col(peer, "fanout.all_responses_ms_median"), "{:.1f}"), "<= 300",
         verdict(None if answered is None else answered <= 300)),
        ("burst 5,000 alarms (alarms/s)", cell(col(haven, "throughput.alarms_per_s"), "{:.0f}"),
         "", cell(col(peer, "throughput.alarms_per_s"), "{:.0f}"), ">= 1.2 x peer",
         verdict(None if hrate is None or prate is None else hrate >= 1.2 * prate,
                 f"{hrate / prate:.2f} x" if hrate and prate else "")),
        ("burst: HTTP connections opened", cell(col(haven, "throughput.http_connections"), "{:.0f}"),
         "", cell(col(peer, "throughput.http_connections"), "{:.0f}"), f"<= {MAX_CONNECTIONS}",
         verdict(None if conns is None else conns <= MAX_CONNECTIONS)),
        ("burst: latency p99 under load (ms)", cell(col(haven, "throughput.latency_under_load.p99_ms"), "{:.0f}"),
         "", cell(col(peer, "throughput.latency_under_load.p99_ms"), "{:.0f}"), "", ""),
        ("lost / duplicated alarms (all Haven runs)", f"{lost} / {dup}", "", "", "0 / 0",
         verdict(lost == 0 and dup == 0)),
        ("SUT RSS after the burst (MB; Haven: worker + redis)",
         cell(col(haven, "sut_memory_end.rss_mb"), "{:.0f}"), "",
         cell(col(peer, "sut_memory_end.rss_mb"), "{:.0f}"), "", ""),
        ("SUT CPU per alarm in the burst (ms)", cell(col(haven, "throughput.sut_cpu_ms_per_alarm"), "{:.2f}"),
         "", cell(col(peer, "throughput.sut_cpu_ms_per_alarm"), "{:.2f}"), "", ""),
    ]
    return rows


def storm_rows(runs: int, quick: bool) -> list[tuple]:
    rows = []
    alarms = 200 if quick else 1000
    for workers in (1, 2, 4):
        results = []
        for i in range(runs):
            wait_quiet(*QUIET)
            say(f"--- storm: {workers} worker(s), run {i + 1} ({load()})")
            results.append(storm(alarms, workers))
            say("    " + "\n    ".join(results[-1].lines()))
        done = [r.done_s for r in results]
        peak = max(r.peak_connections for r in results)
        rss = max(max(r.peak_rss_mb) for r in results)
        ok = all(r.stored == r.alarms and r.complete == r.alarms and not r.duplicates
                 for r in results)
        rows += [
            (f"storm {alarms} in 1 s, {workers}w: last alarm paged (s)", cell(done, "{:.2f}"),
             "bare subscriber " + cell([r.bare_s for r in results], "{:.2f}"), "",
             "all stored + paged", verdict(ok)),
            (f"storm {workers}w: alarms/s", cell([r.alarms_per_s for r in results], "{:.0f}"),
             "", "", "", ""),
            (f"storm {workers}w: API connections open at once (max)", str(peak), "", "",
             f"<= {MAX_CONNECTIONS}", verdict(peak <= MAX_CONNECTIONS)),
            (f"storm {workers}w: worker peak RSS (MB, max)", f"{rss:.0f}", "", "",
             f"<= {MAX_RSS_MB}", verdict(rss <= MAX_RSS_MB)),
        ]
    return rows


def ingest_rows(runs: int, quick: bool) -> list[tuple]:
    """Live ingest (one publisher: the ratio target) and drain (capacity: the scaling
    target, judged only up to this machine's cores)."""
    live: dict[int, list] = {}
    drained: dict[int, list] = {}
    for i in range(runs):
        wait_quiet(*QUIET)
        say(f"--- ingest run {i + 1} ({load()})")
        devices = 2000 if quick else 10_000
        for result in ingest(devices):
            say("    " + result.line())
            live.setdefault(result.workers, []).append(result)
        for result in drain(devices):
            say("    " + result.line())
            drained.setdefault(result.workers, []).append(result)
    rows = []
    for workers, results in live.items():
        ratios = [r.hub_per_s / r.bare_per_s if r.hub_per_s else None for r in results]
        target, ok = "", ""
        if workers == 1:
            target, ok = ">= 0.5 x bare", verdict(None if med(ratios) is None
                                                  else med(ratios) >= 0.5,
                                                  f"{med(ratios):.2f} x" if med(ratios) else "")
        rows.append((f"ingest {results[0].messages} heartbeats, {workers}w (msgs/s)",
                     cell([r.hub_per_s for r in results], "{:.0f}"),
                     "bare " + cell([r.bare_per_s for r in results], "{:.0f}"), "", target, ok))
    one, cores = med([r.hub_per_s for r in drained.get(1, [])]), os.cpu_count() or 1
    for workers, results in drained.items():
        rate = med([r.hub_per_s for r in results])
        target, ok = "", ""
        if workers > 1 and workers <= cores:
            target = "scales (> 1.2 x one worker)"
            ok = verdict(None if rate is None or one is None else rate > one * 1.2,
                         f"{rate / one:.2f} x one worker" if rate and one else "")
        elif workers > cores:
            target, ok = f"more workers than the {cores} cores", "(not judged)"
        rows.append((f"drain {results[0].messages} heartbeats, {workers}w (msgs/s)",
                     cell([r.hub_per_s for r in results], "{:.0f}"),
                     f"{workers} bare " + cell([r.bare_per_s for r in results], "{:.0f}"), "",
                     target, ok))
    return rows


def device_lines() -> list[str]:
    wait_quiet(*QUIET)
    say(f"--- device ({load()})")
    out = subprocess.run([hub_python(), str(ROOT / "bench" / "device_bench.py")],
                         capture_output=True, text=True, cwd=ROOT)
    return (out.stdout + out.stderr).strip().splitlines()


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f
                       if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", "hub",
                            "device"], capture_output=True, text=True).stdout.strip()
    return (f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, commit {rev}"
            f"{' (hub/ or device/ with uncommitted changes)' if dirty else ''}, "
            f"{os.cpu_count()} cores ({cpu}), Python {sys.version.split()[0]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    parser.add_argument("--only", default="peers,storm,ingest,device")
    parser.add_argument("--quiet-load", type=float, default=1.5,
                        help="before each part, wait for the 1-min load average to drop below")
    parser.add_argument("--quiet-wait", type=float, default=120,
                        help="... but at most this many seconds (0: never wait)")
    args = parser.parse_args()
    global QUIET
    QUIET = (args.quiet_load, args.quiet_wait)
    parts = set(args.only.split(","))
    header = machine()
    raw = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    rows: list[tuple] = []
    notes = [f"Measured {header}.", f"Load average at start: {load()}; raw results in {raw}."]
    if "peers" in parts:
        if (PEERS_DIR / "bench_pipeline.py").exists():
            rows += peers_rows(args.runs, args.quick, raw)
        else:
            notes.append(f"peers: skipped, no harness at {PEERS_DIR} (set HAVEN_PEERS_DIR)")
    if "storm" in parts:
        rows += storm_rows(args.runs, args.quick)
    if "ingest" in parts:
        rows += ingest_rows(args.runs, args.quick)
    lines = ["| figure | Haven | baseline, same run | peer (Node-RED) | target | verdict |",
             "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    if "device" in parts:
        lines += ["", "Device (bench/device_bench.py):", "", "```", *device_lines(), "```"]
    notes.append(f"Load average at the end: {load()}. Cells: median (min–max) of "
                 f"{args.runs} run(s){', --quick counts' if args.quick else ''}.")
    text = "\n".join(notes[:2] + [""] + lines + ["", notes[-1]] + notes[2:-1]
                     + ["", "Run log:", "", "```", *LOG, "```"]) + "\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"run-{datetime.datetime.now():%Y%m%d-%H%M%S}.md"
    out.write_text(text)
    print("\n" + text + f"\n(written to {out.relative_to(ROOT)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
