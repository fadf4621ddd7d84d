#!/usr/bin/env python3
"""hold_server.py: a server that accepts connections and holds them, idle, across processes.

bench/compare.sh runs it (directly, or under `shake`) for the row "100,000 concurrent
established connections" of issue 9's table, against hold_conns.py.

    hold_server.py --listen 198.18.12.2:80 --procs 11 --quota 9500 --status /tmp/w/hs

One listening socket is opened, then --procs worker processes are forked that all accept from
it (as nginx's workers do; under the shim this exercises sockets shared across fork). A worker
accepts until it holds --quota connections, then stops watching the listener until one of its
connections goes away, so the connections spread evenly over the workers whatever the order of
their wake-ups: one process can hold only as many as RLIMIT_NOFILE allows, and nginx's
accept_mutex does not balance a burst of accepts.

It never sends. A connection whose peer closes it (EOF) or resets it is closed and no longer
counted; anything the peer sends is read and discarded. Each worker keeps its count of held
connections in STATUS/held.N (rewritten at most every 0.2 s, by rename, so a reader sees whole
numbers); its accept failures by errno name in STATUS/errors.N. `cat STATUS/held.*` summed is
the server's own count. SIGTERM or SIGINT ends every worker; the parent waits for them.
"""

import argparse
import collections
import errno
import json
import os
import select
import signal
import socket
import sys
import time


def write_atomic(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def worker(n, lsock, quota, status, stop):
    ep = select.epoll()
    lfd = lsock.fileno()
    ep.register(lfd, select.EPOLLIN)
    watching = True
    held = {}
    errors = collections.Counter()
    last_written = (-1, None)
    last_time = 0.0

    def report(force=False):
        nonlocal last_written, last_time
        now = time.monotonic()
        state = (len(held), dict(errors))
        if state == last_written or (not force and now - last_time < 0.2):
            return
        write_atomic(f"{status}/held.{n}", f"{len(held)}\n")
        write_atomic(f"{status}/errors.{n}", json.dumps(dict(errors)) + "\n")
        last_written, last_time = state, now

    report(force=True)
    while not stop():
        if watching and len(held) >= quota:
            ep.unregister(lfd)
            watching = False
        elif not watching and len(held) < quota:
            ep.register(lfd, select.EPOLLIN)
            watching = True
        try:
            events = ep.poll(0.2, 4096)
        except InterruptedError:
            continue
        for fd, _ev in events:
            if fd == lfd:
                while len(held) < quota:
                    try:
                        c, _ = lsock.accept()
                    except BlockingIOError:
                        break
                    except OSError as e:  # EMFILE, ECONNABORTED...: counted, tried again later
                        errors[errno.errorcode.get(e.errno, str(e.errno))] += 1
                        time.sleep(0.01)
                        break
                    c.setblocking(False)
                    held[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN | select.EPOLLRDHUP)
                continue
            c = held.get(fd)
            if c is None:
                continue
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                ep.unregister(fd)
                del held[fd]
                c.close()
        report()
    report(force=True)
    for c in held.values():
        c.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="IP:PORT")
    p.add_argument("--procs", type=int, required=True)
    p.add_argument("--quota", type=int, required=True, help="connections per process at most")
    p.add_argument("--status", required=True, help="directory for the per-process counts")
    p.add_argument("--backlog", type=int, default=4096)
    a = p.parse_args()
    host, _, port = a.listen.rpartition(":")
    if not host or not port.isdigit() or a.procs < 1 or a.quota < 1:
        p.error("--listen IP:PORT, --procs and --quota must be given, positive")
    os.makedirs(a.status, exist_ok=True)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((host, int(port)))
    lsock.listen(a.backlog)
    lsock.setblocking(False)

    stop = {"now": False}
    kids = []

    def on_signal(_sig, _frame):
        stop["now"] = True
        for pid in kids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    for n in range(a.procs):
        pid = os.fork()
        if pid == 0:
            kids.clear()
            code = 0
            try:
                worker(n, lsock, a.quota, a.status, lambda: stop["now"])
            except Exception as e:
                print(f"hold_server: worker {n}: {e}", file=sys.stderr)
                code = 1
            os._exit(code)
        kids.append(pid)
    lsock.close()
    status = 0
    for pid in kids:
        while True:
            try:
                _, st = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        if st != 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
