#!/usr/bin/env python3
"""hold_conns.py: opens many TCP connections to one server and holds them open, idle.

bench/compare.sh uses it for two rows of issue 9's table: a server holding 10,000 idle
connections (whose CPU ticks are then counted) and 100,000 concurrent established connections
(none refused; the stack's memory per connection). It runs on the kernel's TCP, in the client's
namespace, against either server.

    hold_conns.py --dst 198.18.12.2:80 --src 198.18.12.10,198.18.12.11 --count 100000 \
        --ready /tmp/w/ready --hold 600

The connections are spread over --procs holder processes (default: as many as the hard limit on
open files requires, RLIMIT_NOFILE being per process), each opening its share non-blocking, at
most --inflight at a time, round-robin over the --src addresses (each socket bound with
IP_BIND_ADDRESS_NO_PORT, so the 4-tuple, not the source address alone, must be unique: one
address gives at most ip_local_port_range's ports). A connect that has not completed after
--connect-timeout seconds counts as a timeout; the connect phase ends when every attempt has
completed or failed, or after --deadline seconds (the rest count as timeouts); with --give-up N
a holder stops opening after N failures in a row (the rest count as "abandoned"), so that a
server that refuses everything beyond some number does not keep the phase busy until the deadline.

When every holder's connect phase has ended, one line goes to the --ready file (written to
FILE.tmp, then renamed, so a reader never sees half of it) and to stderr:

    ready established=N refused=N reset=N timeout=N local=N other=N abandoned=N seconds=S

Then the established connections are held, sending nothing, for --hold seconds or until SIGTERM
or SIGINT; any of them that the server closes or resets meanwhile counts as dropped (a server
must not close an idle connection that it has not timed out). At the end one JSON object goes
to stdout with those counts summed over the holders, "dropped", "open_at_end" and the failures
by errno name ("errors"), and every socket is closed. Exit status: 0 if every attempt was
established and none was dropped, 1 otherwise, 2 on bad arguments.

"local" counts failures on the client's side before a SYN left (socket(), bind() or connect()
returning an error at once: out of fds, of local ports, of memory): they measure the client, not
the server.
"""

import argparse
import collections
import errno
import json
import os
import resource
import select
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = 24  # <linux/in.h>; Python's socket module does not name it
FD_MARGIN = 64                # descriptors a holder keeps for itself besides its connections
KINDS = ("established", "refused", "reset", "timeout", "local", "other", "abandoned")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dst", required=True, help="server IP:PORT")
    p.add_argument("--src", required=True, help="comma-separated local source addresses")
    p.add_argument("--count", type=int, required=True, help="connections to open")
    p.add_argument("--procs", type=int, default=0, help="holder processes (0: as needed)")
    p.add_argument("--inflight", type=int, default=512, help="connects in progress at once")
    p.add_argument("--connect-timeout", type=float, default=10.0)
    p.add_argument("--deadline", type=float, default=300.0, help="bound on the connect phase, s")
    p.add_argument("--hold", type=float, default=60.0, help="seconds to hold after the phase")
    p.add_argument("--ready", help="file that gets the ready line")
    p.add_argument("--give-up", type=int, default=0,
                   help="stop opening after this many failures in a row (0: never)")
    a = p.parse_args()
    host, _, port = a.dst.rpartition(":")
    if not host or not port.isdigit():
        p.error("--dst must be IP:PORT, e.g. 198.18.12.2:80")
    a.dst = (host, int(port))
    a.src = [s for s in a.src.split(",") if s]
    if not a.src:
        p.error("--src needs at least one address")
    if a.count < 1 or a.inflight < 1 or a.procs < 0:
        p.error("--count and --inflight must be positive, --procs not negative")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    per_proc = (hard if hard != resource.RLIM_INFINITY else 1 << 20) - FD_MARGIN
    if per_proc < 1:
        p.error(f"the hard limit on open files ({hard}) leaves no room for connections")
    need = -(-a.count // per_proc)
    if a.procs == 0:
        a.procs = need
    elif a.procs < need:
        p.error(f"--procs {a.procs}: the hard limit of {hard} open files per process needs "
                f"--procs {need} or more for {a.count} connections")
    return a


def raise_fd_limit(count):
    """The soft limit up to what count connections need (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = count + FD_MARGIN
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def errname(code):
    return errno.errorcode.get(code, str(code))


def holder(a, count, offset, out, stop):
    """One holder process: opens count connections, reports on out, holds until stop()."""
    raise_fd_limit(count)
    ep = select.epoll()
    pending = {}                   # fd -> socket, connect in progress
    order = collections.deque()    # (started, fd, socket), oldest first: one timeout for all
    held = {}                      # fd -> socket, established
    counts = collections.Counter()
    errors = collections.Counter()
    started = 0
    in_a_row = 0  # failures since the last success
    t0 = time.monotonic()

    def fail(kind, code):
        nonlocal in_a_row
        counts[kind] += 1
        errors[f"{kind}:{errname(code)}"] += 1
        in_a_row += 1

    def start_one():
        nonlocal started
        src = a.src[(offset + started) % len(a.src)]
        started += 1
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        except OSError as e:
            fail("local", e.errno)
            return
        try:
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((src, 0))
            rc = s.connect_ex(a.dst)
        except OSError as e:
            s.close()
            fail("local", e.errno)
            return
        if rc == 0:
            held[s.fileno()] = s
            ep.register(s.fileno(), select.EPOLLRDHUP | select.EPOLLIN)
            counts["established"] += 1
        elif rc == errno.EINPROGRESS:
            pending[s.fileno()] = s
            order.append((time.monotonic(), s.fileno(), s))
            ep.register(s.fileno(), select.EPOLLOUT)
        else:
            s.close()
            fail("refused" if rc == errno.ECONNREFUSED else "local", rc)

    def settle(fd):
        nonlocal in_a_row
        s = pending.pop(fd)
        code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code == 0:
            held[fd] = s
            ep.modify(fd, select.EPOLLRDHUP | select.EPOLLIN)
            counts["established"] += 1
            in_a_row = 0
            return
        ep.unregister(fd)
        s.close()
        kind = {errno.ECONNREFUSED: "refused", errno.ECONNRESET: "reset",
                errno.ETIMEDOUT: "timeout"}.get(code, "other")
        fail(kind, code)

    def drop(fd):
        """The server closed (FIN: EOF), reset (the errno) or wrote to an idle connection."""
        s = held.pop(fd)
        ep.unregister(fd)
        code = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        how = errname(code) if code else None
        if how is None:
            try:
                how = "data" if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) else "EOF"
            except OSError as e:
                how = errname(e.errno)
        s.close()
        counts["dropped"] += 1
        errors[f"dropped:{how}"] += 1

    # ---- connect phase
    deadline = t0 + a.deadline
    limit = count  # lowered to `started` when giving up
    while not stop() and (started < limit or pending):
        now = time.monotonic()
        if now >= deadline:
            break
        if a.give_up and in_a_row >= a.give_up and limit > started:
            limit = started
        while started < limit and len(pending) < a.inflight:
            start_one()
        while order and pending.get(order[0][1]) is not order[0][2]:
            order.popleft()  # already settled (the fd number may have been reused since)
        if order and now - order[0][0] >= a.connect_timeout:
            _, fd, s = order.popleft()
            pending.pop(fd)
            ep.unregister(fd)
            s.close()
            fail("timeout", errno.ETIMEDOUT)
            continue
        wait = a.connect_timeout - (now - order[0][0]) if order else 0.1
        for fd, _ev in ep.poll(max(0.0, min(wait, deadline - now, 0.5)), 4096):
            if fd in pending:
                settle(fd)
            elif fd in held:
                drop(fd)  # readable or hung up before we sent anything: the server closed it
    for fd, s in list(pending.items()):
        ep.unregister(fd)
        s.close()
        fail("timeout", errno.ETIMEDOUT)
    pending.clear()
    if count > started:
        kind = "abandoned" if limit < count else "timeout"
        why = (f"not attempted after {a.give_up} failures in a row" if limit < count
               else "not attempted before the deadline")
        counts[kind] += count - started
        errors[f"{kind}:{why}"] += count - started
    ready = {k: counts[k] for k in KINDS}
    ready["seconds"] = round(time.monotonic() - t0, 1)
    out.write(json.dumps({"ready": ready}) + "\n")
    out.flush()

    # ---- hold phase: nothing is sent; the server closing or resetting one is a drop.
    end = time.monotonic() + a.hold
    while not stop() and held:
        left = end - time.monotonic()
        if left <= 0:
            break
        for fd, _ev in ep.poll(min(left, 0.5), 4096):
            if fd in held:
                drop(fd)
    summary = {k: counts[k] for k in KINDS + ("dropped",)}
    summary.update(open_at_end=len(held), errors=dict(errors))
    out.write(json.dumps({"summary": summary}) + "\n")
    out.flush()
    for s in held.values():
        s.close()


def main():
    a = parse_args()
    stop = {"now": False}
    children = []  # (pid, read end)
    children_files = []  # the same, for a new holder to close its siblings' pipes

    def on_signal(_sig, _frame):  # the parent passes a stop on to every holder
        stop["now"] = True
        for pid, _f in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def on_signal_holder(_sig, _frame):
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for i in range(a.procs):
        share = a.count // a.procs + (1 if i < a.count % a.procs else 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, on_signal_holder)
            signal.signal(signal.SIGINT, on_signal_holder)
            children.clear()
            os.close(r)
            for _pid, f in children_files:
                f.close()
            code = 0
            try:
                with os.fdopen(w, "w") as out:
                    holder(a, share, i, out, lambda: stop["now"])
            except Exception as e:  # the parent counts the missing share as failed
                print(f"hold_conns: holder {i}: {e}", file=sys.stderr)
                code = 1
            os._exit(code)
        os.close(w)
        children.append((pid, os.fdopen(r)))
        children_files.append(children[-1])

    def collect(key):
        """Reads each holder's next line (its key: 'ready' or 'summary'), None if it died."""
        got = []
        for _pid, f in children:
            line = f.readline()
            try:
                got.append(json.loads(line)[key])
            except (ValueError, KeyError):
                got.append(None)
        return got

    t0 = time.monotonic()
    readies = collect("ready")
    ready = collections.Counter()
    for r in readies:
        if r:
            ready.update({k: r[k] for k in KINDS})
    lost = sum(1 for r in readies if r is None)
    line = ("ready " + " ".join(f"{k}={ready[k]}" for k in KINDS) +
            f" seconds={time.monotonic() - t0:.1f}" + (f" holders_lost={lost}" if lost else ""))
    if a.ready:
        with open(a.ready + ".tmp", "w") as f:
            f.write(line + "\n")
        os.rename(a.ready + ".tmp", a.ready)
    print(line, file=sys.stderr, flush=True)

    end = time.monotonic() + a.hold
    while not stop["now"] and time.monotonic() < end:
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))
    for pid, _f in children:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    summaries = collect("summary")
    total = collections.Counter()
    errors = collections.Counter()
    for s in summaries:
        if s:
            total.update({k: s[k] for k in KINDS + ("dropped", "open_at_end")})
            errors.update(s["errors"])
    result = {k: total[k] for k in KINDS + ("dropped", "open_at_end")}
    result.update(attempted=a.count, holders=a.procs, holders_lost=sum(s is None for s in summaries),
                  connect_seconds=round(max((r["seconds"] for r in readies if r), default=0), 1),
                  sources=len(a.src), errors=dict(errors))
    print(json.dumps(result), flush=True)  # before the holders' closing, which takes a while
    for pid, f in children:
        os.waitpid(pid, 0)
        f.close()
    ok = total["established"] == a.count and total["dropped"] == 0 and not result["holders_lost"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
