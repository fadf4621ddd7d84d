#!/usr/bin/env python3
"""cputicks.py: the CPU ticks (utime + stime) that a set of processes uses over a window.

bench/compare.sh uses it for the idle row of issue 9's table: a server holding 10,000 idle
connections must use 0 ticks (goal) and under 1% of a core (floor) over 10 s.

    cputicks.py --seconds 10 --pids 4711,4712,4713 --ns shkcmp-99-pS,shkcmp-99-pC \
        --comm shake-keeper

The processes counted are the --pids (the server's processes: nginx's master and workers) and
every process whose name (/proc/PID/comm) is one of --comm and whose network namespace is one
of --ns (names under /run/netns): the stack's keeper, which holds the device and runs the
timers outside the server, is part of the server's cost. Both sets are taken at the start and
again at the end; a process that appears during the window counts from zero, and one that
exits during it is named in "exited" (its last ticks are lost, so the sum is then a lower
bound).

utime and stime are fields 14 and 15 of /proc/PID/stat (proc(5)), in clock ticks
(sysconf(_SC_CLK_TCK)), and include every thread of the process. The output is one JSON object:

    {"ticks": 0, "clk_tck": 100, "seconds": 10.0, "percent_of_core": 0.0,
     "processes": {"4711": {"comm": "nginx", "ticks": 0}, ...}, "exited": []}
"""

import argparse
import json
import os
import sys
import time


def ticks_of(pid):
    """utime + stime of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of the whole line


def comm_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def netns_ids(names):
    ids = set()
    for n in names:
        try:
            st = os.stat(f"/run/netns/{n}")
        except OSError:
            continue
        ids.add((st.st_dev, st.st_ino))
    return ids


def matching(comms, ns_ids):
    """pids whose comm is in comms and whose network namespace is one of ns_ids."""
    found = set()
    if not comms or not ns_ids:
        return found
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        if comm_of(entry) not in comms:
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in ns_ids:
            found.add(int(entry))
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--pids", default="", help="comma-separated pids")
    p.add_argument("--ns", default="", help="comma-separated namespace names (/run/netns)")
    p.add_argument("--comm", default="", help="comma-separated process names, e.g. shake-keeper")
    a = p.parse_args()
    if a.seconds <= 0:
        p.error("--seconds must be positive")
    pids = {int(x) for x in a.pids.split(",") if x}
    comms = {x for x in a.comm.split(",") if x}
    ns_ids = netns_ids([x for x in a.ns.split(",") if x])

    first = pids | matching(comms, ns_ids)
    start = {pid: ticks_of(pid) for pid in first}
    t0 = time.monotonic()
    time.sleep(a.seconds)
    elapsed = time.monotonic() - t0
    last = pids | matching(comms, ns_ids) | first
    procs, exited, total = {}, [], 0
    for pid in sorted(last):
        now = ticks_of(pid)
        before = start.get(pid)
        if now is None:
            exited.append(pid)
            continue
        used = now - (before if before is not None else 0)
        procs[str(pid)] = {"comm": comm_of(pid), "ticks": used,
                           "new": before is None}
        total += used
    missing = sorted(pid for pid in pids if start.get(pid) is None)
    clk = os.sysconf("SC_CLK_TCK")
    print(json.dumps({"ticks": total, "clk_tck": clk, "seconds": round(elapsed, 2),
                      "percent_of_core": round(100.0 * total / (clk * elapsed), 3),
                      "processes": procs, "exited": exited, "missing_at_start": missing}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
