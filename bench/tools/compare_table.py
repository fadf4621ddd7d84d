#!/usr/bin/env python3
"""compare_table.py: the table of bench/compare.sh, from its per-run results file.

    compare_table.py RESULTS        (the parameters come from the environment compare.sh sets)

RESULTS has one line per measured figure of one run:

    SCENARIO ROW IMPL REP METRIC VALUE FAILED

IMPL is kernel or libshake; VALUE is a number, "fail" (the run failed: it exited non-zero, timed
out or printed no figure; it is left out of the medians) or "na" (the figure cannot be measured
with this build, e.g. the stack's memory before `shake stat` exists); FAILED is the count of
failed requests or connections in that run. Every figure in the table is the median of the
runs that produced one; ratios are libshake / kernel of those medians. Each row carries its
goal and floor from issue 9 and a verdict:

    ok            the goal holds
    floor ok      the floor holds, the goal does not
    MISSES FLOOR  the floor does not hold (also when the goal has no separate floor and fails)
    no data       a side has no successful run

Exit status 0; the table goes to stdout.
"""

import collections
import os
import statistics
import sys


def env(name, default):
    return os.environ.get(name, default)


def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "Gbit/s":
        return f"{v:.2f}"
    if unit == "us":
        return f"{v:.1f}"
    if unit in ("B", "KiB"):
        return f"{v:.0f}"
    if unit == "x":
        return f"{v:.2f}x"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.2f}"


def main():
    results = collections.defaultdict(list)  # (sc, row, impl, metric) -> [(rep, value)]
    failed = collections.Counter()           # (sc, row, impl) -> failed requests
    failed_runs = collections.Counter()      # (sc, row, impl, metric) -> runs without a figure
    unavailable = set()                      # (sc, row, impl, metric) with "na"
    scenarios = []
    with open(sys.argv[1]) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 7:
                continue
            sc, row, impl, rep, metric, value, nfail = parts
            if sc not in scenarios:
                scenarios.append(sc)
            key = (sc, row, impl, metric)
            if value == "fail":
                failed_runs[key] += 1
            elif value == "na":
                unavailable.add(key)
            else:
                results[key].append((int(rep), float(value)))
            if metric == "main":
                failed[(sc, row, impl)] += int(nfail)

    ab_n = env("AB_N", "20000")
    wrk_d = env("WRK_SECONDS", "10")
    idle_n = env("IDLE_CONNS", "10000")
    idle_s = env("IDLE_SECONDS", "10")
    conns = env("CONNS", "100000")
    # (row, metric, label, unit, kind, goal, floor); kind: higher/lower = libshake/kernel ratio
    # against goal and floor; scaling/ticks/count/bytes = libshake's own figure against them.
    spec = [
        ("ab-c32-w1", "main", f"nginx 1 worker, ab -n{ab_n} -c32", "req/s", "higher", 1.5, 1.0),
        ("ab-c50-w1", "main", f"nginx 1 worker, ab -n{ab_n} -c50", "req/s", "higher", 1.5, 1.0),
        ("ab-c32-w2", "main", f"nginx 2 workers, ab -n{ab_n} -c32", "req/s", "higher", 1.5, 1.0),
        ("ab-c50-w2", "main", f"nginx 2 workers, ab -n{ab_n} -c50", "req/s", "higher", 1.5, 1.0),
        ("wrk-t1-c32", "main", f"nginx 2 workers, wrk -t1 -c32 -d{wrk_d}s", "req/s",
         "higher", 1.2, 1.0),
        ("wrk-t2-c50", "main", f"nginx 2 workers, wrk -t2 -c50 -d{wrk_d}s", "req/s",
         "higher", 1.2, 1.0),
        ("sockperf", "main", "sockperf ping-pong --tcp, p50", "us", "lower", 0.8, 1.0),
        ("sockperf", "p99", "sockperf ping-pong --tcp, p99", "us", "lower", 1.0, None),
        ("iperf3-up", "main", "iperf3 1 stream, client -> server", "Gbit/s", "higher", 0.9, 0.7),
        ("iperf3-down", "main", "iperf3 1 stream, server -> client (-R)", "Gbit/s", "higher",
         0.9, 0.7),
        ("redis", "main", f"redis-benchmark -n{env('REDIS_N', '100000')} -c50, GET", "req/s",
         "higher", 1.2, 1.0),
        ("redis", "set", f"redis-benchmark -n{env('REDIS_N', '100000')} -c50, SET", "req/s",
         "higher", 1.2, 1.0),
        ("scaling", "main", "scaling: ab -c50 2 workers / 1 worker", "x", "scaling", 1.7, 1.4),
        ("idle", "main", f"idle: {idle_n} idle conns, {idle_s} s, server CPU", "ticks", "ticks",
         0.0, 1.0),
        ("conns", "main", f"{conns} concurrent conns (hold_server.py), held", "conns", "count", None,
         None),
        ("conns", "mem", "  stack memory per connection", "B", "bytes", 2048, 4096),
        ("conns", "pss", "  server anon+shmem PSS growth/conn (not stack)", "B", "info", None,
         None),
    ]

    def med(key):
        vals = [v for _, v in results.get(key, [])]
        return statistics.median(vals) if vals else None

    def scaling(sc, impl):
        """Median over repetitions of (2 workers / 1 worker) within the same repetition."""
        one = dict(results.get((sc, "ab-c50-w1", impl, "main"), []))
        two = dict(results.get((sc, "ab-c50-w2", impl, "main"), []))
        per_rep = [two[r] / one[r] for r in one if r in two and one[r] > 0]
        return statistics.median(per_rep) if per_rep else None

    header = ("scenario", "row", "unit", "kernel", "libshake", "ratio", "goal", "floor",
              "verdict", "fail k", "fail l")
    lines = []
    misses = []
    for sc in scenarios:
        for row, metric, label, unit, kind, goal, floor in spec:
            key_k, key_l = (sc, row, "kernel", metric), (sc, row, "libshake", metric)
            present = any(k[:2] == (sc, row) for k in list(results) + list(failed_runs) +
                          list(unavailable))
            if row == "scaling":
                present = (sc, "ab-c50-w1", "kernel", "main") in results or \
                    (sc, "ab-c50-w1", "libshake", "main") in results
                present = present and env("SCALING", "1") == "1"
            if not present:
                continue
            ratio = "-"
            if row == "scaling":
                k, l = scaling(sc, "kernel"), scaling(sc, "libshake")
            else:
                k, l = med(key_k), med(key_l)
            kcell, lcell = fmt(k, unit), fmt(l, unit)
            if key_l in unavailable and l is None:
                lcell = "n/a (shake stat unavailable)"
            if key_k in unavailable and k is None:
                kcell = "n/a"
            goal_s = floor_s = "-"
            verdict = "no data"
            if kind in ("higher", "lower"):
                op = ">=" if kind == "higher" else "<="
                goal_s = f"{op}{goal}x"
                floor_s = f"{op}{floor}x" if floor is not None else "-"
                if k is not None and l is not None and k > 0:
                    r = l / k
                    ratio = f"{r:.2f}"
                    good = (lambda x, t: x >= t) if kind == "higher" else (lambda x, t: x <= t)
                    if good(r, goal):
                        verdict = "ok"
                    elif floor is not None and good(r, floor):
                        verdict = "floor ok"
                    else:
                        verdict = "MISSES FLOOR" if floor is not None else "misses goal"
            elif kind == "scaling":
                goal_s, floor_s = f">={goal}x", f">={floor}x"
                if l is not None:
                    verdict = "ok" if l >= goal else "floor ok" if l >= floor else "MISSES FLOOR"
            elif kind == "ticks":
                pk, pl = med((sc, row, "kernel", "pct")), med((sc, row, "libshake", "pct"))
                if k is not None:
                    kcell = f"{k:.0f} ({pk:.2f}%)"
                if l is not None:
                    lcell = f"{l:.0f} ({pl:.2f}%)"
                goal_s, floor_s = "0 ticks", "<1% core"
                if l is not None:
                    verdict = "ok" if l == 0 else "floor ok" if pl < floor else "MISSES FLOOR"
            elif kind == "count":
                floor_s = "none refused"
                goal_s = "all held"
                if l is not None:
                    ok = l >= float(conns) and failed[(sc, row, "libshake")] == 0 and \
                        not failed_runs[key_l]
                    verdict = "ok" if ok else "MISSES FLOOR"
                if k is not None and l is not None and k > 0:
                    ratio = f"{l / k:.2f}"
            elif kind == "bytes":
                goal_s, floor_s = "<=2 KiB", "<=4 KiB"
                if l is not None:
                    verdict = "ok" if l <= goal else "floor ok" if l <= floor else "MISSES FLOOR"
                elif key_l in unavailable:
                    verdict = "unmeasured"
            elif kind == "info":
                verdict = "(info)"
                if k is not None and l is not None and k > 0:
                    ratio = f"{l / k:.2f}"

            def fails(impl, key):
                n = failed[(sc, row, impl)] if metric == "main" else 0
                runs = failed_runs[key]
                if row == "scaling":
                    return "-"
                return f"{n}" + (f" ({runs} runs)" if runs else "")
            cells = (sc, label, unit, kcell, lcell, ratio, goal_s, floor_s, verdict,
                     fails("kernel", key_k), fails("libshake", key_l))
            lines.append(cells)
            if verdict == "MISSES FLOOR":
                misses.append(f"{sc}: {label.strip()}")

    widths = [max(len(str(c[i])) for c in [header] + lines) for i in range(len(header))]
    right = {3, 4, 5, 9, 10}
    for cells in [header] + lines:
        print("  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    print()
    if misses:
        print(f"{len(misses)} row(s) miss their floor:")
        for m in misses:
            print(f"  {m}")
    else:
        print("every row with data holds its floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
