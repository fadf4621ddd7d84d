# The legitimate client of the fault suite's resource cases: fresh-connection HTTP/1.1 GETs of
# /index.html (whose body is "hello\n") for at most SECONDS, 10 ms apart, each with a 3 s
# timeout, and only until the file STOP exists when it is given; prints "OK TRIED".
#   legit_client.py HOST PORT SECONDS [STOP]
import os, socket, sys, time
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
stop = sys.argv[4] if len(sys.argv) > 4 else None
ok = tried = 0
end = time.time() + seconds
while time.time() < end and tried < 100000 and not (stop and os.path.exists(stop)):
    tried += 1
    try:
        s = socket.create_connection((host, port), timeout=3)
        s.settimeout(3)
        s.sendall(b"GET /index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(65536)
            if not d: break
            buf += d
        s.close()
        if buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"hello\n"): ok += 1
    except OSError:
        pass
    time.sleep(0.01)
print(f"{ok} {tried}")
