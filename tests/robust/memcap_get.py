# attack.memcap's download: GETs PATH from HOST:PORT over HTTP/1.0 and prints the body's sha256
# (or why it failed), with the bytes received each second to stderr.
#   memcap_get.py HOST PORT PATH SECONDS
import hashlib, socket, sys, time
host, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
end = time.time() + seconds
s = socket.create_connection((host, port), timeout=10)
s.settimeout(5)
s.sendall(f"GET {path} HTTP/1.0\r\nHost: t\r\n\r\n".encode())
buf, last, got = b"", time.time(), 0
try:
    while time.time() < end:
        d = s.recv(1 << 16)
        if not d: break
        buf += d
        if time.time() - last >= 1:
            last = time.time()
            print(f"{len(buf)} bytes", file=sys.stderr, flush=True)
    else:
        print(f"timeout after {len(buf)} bytes"); sys.exit(1)
except OSError as e:
    print(f"{type(e).__name__} after {len(buf)} bytes"); sys.exit(1)
head, _, body = buf.partition(b"\r\n\r\n")
print(hashlib.sha256(body).hexdigest() if head.startswith(b"HTTP/1.1 200") else f"bad reply after {len(buf)} bytes")
