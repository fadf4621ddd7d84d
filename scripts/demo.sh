#!/usr/bin/env bash
# The main job end to end: build, a private network namespace with a TUN device, a kernel-side
# HTTP server (nginx), an unmodified curl whose TCP socket libshake's own stack serves
# (`shake curl`), and that connection's handshake and close as they crossed the wire.
#
#   scripts/demo.sh                 # SIZE=1048576 by default; asks sudo for root if needed
#
# Everything happens inside a namespace this script creates and removes; addresses are in
# 198.18.0.0/15.
set -euo pipefail
cd "$(dirname "$0")/.."

# Root is needed (apt-get, network namespaces, TUN devices): a user with sudo is asked for it
# here, so the same command works in a root shell without sudo and for such a user.
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then exec sudo -E "$PWD/scripts/$(basename "$0")" "$@"; fi
  echo "demo: needs root to create a network namespace and a TUN device; run it as root (no sudo on this machine)" >&2
  exit 1
fi
scripts/install-deps.sh
build=${BUILD_DIR:-build}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target shake shake_preload >/dev/null

ns="shake-demo-$$"
work=$(mktemp -d /tmp/shake-demo.XXXXXX)
cleanup() {
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  # What is left in the namespace: the stack's keeper holds TIME-WAIT for a minute.
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

size=${SIZE:-1048576}
head -c "$size" /dev/urandom > "$work/file"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
# The kernel side owns 198.18.0.1 on the TUN device and routes 198.18.0.0/24 into it, where
# libshake's stack answers as 198.18.0.2.
ip -n "$ns" tuntap add dev shake0 mode tun
ip -n "$ns" addr add 198.18.0.1/24 dev shake0
ip -n "$ns" link set shake0 up

cat > "$work/nginx.conf" <<CONF
daemon on;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 198.18.0.1:80; root $work; }
}
CONF
ip netns exec "$ns" nginx -c "$work/nginx.conf" -p "$work"

echo "== shake curl http://198.18.0.1/file ($size bytes): curl's socket is served by libshake"
ip netns exec "$ns" "$build/shim/shake" --device tun:shake0 --addr 198.18.0.2/24 \
  --pcap "$work/demo.pcap" --trace "$work/demo.trace" -- \
  curl -sS -o "$work/out" -w 'curl: HTTP %{http_code}, %{size_download} bytes in %{time_total} s\n' \
  http://198.18.0.1/file
if cmp -s "$work/file" "$work/out"; then
  echo "== the download is byte-exact ($(sha256sum < "$work/out" | cut -c1-16)...)"
else
  echo "demo: the downloaded file differs from the served one" >&2
  exit 1
fi
cp "$work/demo.pcap" ./shake-demo.pcap
echo "== the whole capture is saved as ./shake-demo.pcap (tcpdump -nr shake-demo.pcap)"
echo "== the connection as libshake performed it: handshake, data, close, TIME-WAIT"
echo "   (shake trace: the stack's states from its event log, the kernel's inferred)"
"$build/shim/shake" trace --pcap "$work/demo.pcap" --log "$work/demo.trace"
