#!/usr/bin/env bash
# `shake setup` as root, then shake as an unprivileged user (issue 11: "A test runs shake setup as
# root, then shake curl as an unprivileged user").
#   1. in a private network namespace, `shake setup --user nobody --device shk9 --addr
#      198.18.40.1/24`; checks what it made: a persistent TUN with multi_queue owned by nobody,
#      up, with 198.18.40.1/24 and the route, /dev/net/tun usable by nobody; a second run
#      changes nothing and says "(kept)" (the mode of /dev/net/tun, a host-wide node that
#      setup may open up, is put back at the end);
#   2. `shake doctor` as nobody (setpriv --reuid nobody, no capabilities): no problem; and as
#      root for a device that is missing: a problem line naming `shake setup`;
#   3. a kernel HTTP server (python3 -m http.server on 198.18.40.1), and as nobody
#      `shake --device tun:shk9 --addr 198.18.40.2/24 -- curl .../blob`: exit 0, the bytes equal
#      (sha256), and the TUN device's counters show they crossed it (the stack, not a kernel
#      socket, carried them);
#   3b. as nobody, `shake trace --device ... -- curl ...`: the ladder of curl's connection;
#   4. `shake setup --remove` removes the device; everything is removed on exit, also on failure.
#
#   setup_netns_test.sh SHAKE      (libshake.so is found next to SHAKE)
# Skips (exit 77) with the reason without root or a needed program; fails instead when CI=true.
# Packets stay in the namespace it creates (198.18.40.0/24).
set -uo pipefail
shake_src=$(readlink -f "${1:?usage: setup_netns_test.sh SHAKE}")
me=setup_netns
ns="shksetup-$$"
dev=shk9
net=198.18.40

say() { echo "$me: $*"; }
skip() {
  say "SKIP: $1"
  [[ "${CI:-}" == true ]] && { echo "$me: CI=true: not skipping" >&2; exit 1; }
  exit 77
}

[[ $(id -u) -eq 0 ]] || skip "not root: shake setup and network namespaces need root"
for p in ip setpriv curl sha256sum; do
  command -v "$p" >/dev/null || skip "$p is not installed"
done
py=$(command -v python3) || skip "python3 is not installed"
py=$(readlink -f "$py")
[[ -c /dev/net/tun ]] || skip "no /dev/net/tun"
id nobody >/dev/null 2>&1 || skip "no user nobody"
nogroup=$(id -gn nobody)
lib="$(dirname "$shake_src")/libshake.so"
[[ -f "$lib" ]] || skip "no libshake.so next to $shake_src"
ip netns add "$ns" 2>/dev/null || skip "cannot create network namespaces"

work=$(mktemp -d /tmp/shksetup.XXXXXX)
chmod 755 "$work"
tun_mode=$(stat -c %a /dev/net/tun)  # shake setup may open it up; put it back afterwards
cleanup() {
  local rc=$?
  set +e
  chmod "$tun_mode" /dev/net/tun
  [[ -f "$work/http.pid" ]] && kill "$(cat "$work/http.pid")" 2>/dev/null
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$ns" 2>/dev/null  # the device goes with its namespace
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces left by a killed run.
for old in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  if [[ "$old" =~ ^shksetup-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
    ip netns del "$old" 2>/dev/null
  fi
done

# The user must be able to reach shake and libshake.so: a copy in a world-readable directory
# (the build tree may sit under a private home).
mkdir -p "$work/bin" "$work/www" "$work/out"
cp "$shake_src" "$lib" "$work/bin/"
keeper="$(dirname "$shake_src")/shake-keeper"  # libshake.so starts it from beside itself
[[ -x "$keeper" ]] && cp "$keeper" "$work/bin/"
chmod 755 "$work/bin" "$work/bin/shake" "$work/www"
[[ -f "$work/bin/shake-keeper" ]] && chmod 755 "$work/bin/shake-keeper"
chmod 644 "$work/bin/libshake.so"
chown nobody "$work/out"
shake="$work/bin/shake"

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then say "ok: $what"; else say "FAIL: $what"; failures=$((failures + 1)); fi
}
in_ns() { ip netns exec "$ns" "$@"; }
as_nobody() {  # SHAKE_KEEPER_IDLE=1: a stack's keeper ends a second after its last program
  in_ns setpriv --reuid=nobody --regid="$nogroup" --clear-groups --inh-caps=-all \
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work/out" USER=nobody SHAKE_KEEPER_IDLE=1 "$@"
}
keeper_gone() {  # waits (at most 5 s) until no shake-keeper runs in the namespace
  local i
  for i in $(seq 50); do
    ip netns pids "$ns" 2>/dev/null | xargs -r ps -o comm= -p 2>/dev/null | grep -q shake-keeper || return 0
    sleep 0.1
  done
  say "a shake-keeper still runs in $ns after 5 s"
  return 1
}
t0=$SECONDS
in_ns ip link set lo up

# ---- 1. setup, twice -------------------------------------------------------------------------
in_ns "$shake" setup --user nobody --device "$dev" --addr "$net.1/24" >"$work/setup1" 2>&1
rc=$?
sed "s/^/$me: setup: /" "$work/setup1"
check "shake setup exits 0" test $rc -eq 0
check "shake setup created the device" grep -q "created $dev" "$work/setup1"
uid=$(id -u nobody)
flags=$(in_ns cat "/sys/class/net/$dev/tun_flags" 2>/dev/null)
check "$dev is a TUN device (tun_flags $flags) with multi_queue" \
  bash -c "(( (${flags:-0} & 0x0001) && (${flags:-0} & 0x0100) && (${flags:-0} & 0x0800) ))"
check "$dev belongs to nobody" test "$(in_ns cat /sys/class/net/$dev/owner 2>/dev/null)" == "$uid"
check "$dev has $net.1/24" bash -c "ip -n '$ns' -4 addr show dev $dev | grep -q 'inet $net.1/24'"
check "$dev is up" bash -c "ip -n '$ns' link show dev $dev | grep -q '<.*UP'"
check "the kernel routes $net.2 through $dev" bash -c "ip -n '$ns' route get $net.2 | grep -q 'dev $dev'"
in_ns "$shake" setup --user nobody --device "$dev" --addr "$net.1/24" >"$work/setup2" 2>&1
rc=$?
sed "s/^/$me: setup again: /" "$work/setup2"
check "shake setup again exits 0" test $rc -eq 0
check "shake setup again changes nothing (every step kept)" \
  bash -c "! grep -Eq 'created|added|brought|set to|turned|made' '$work/setup2' && [[ \$(grep -c '(kept)' '$work/setup2') -ge 5 ]]"
check "shake setup without root says so in one line" \
  bash -c "out=\$(setpriv --reuid=nobody --regid=$nogroup --clear-groups '$shake' setup --user nobody 2>&1); rc=\$?; [[ \$rc -ne 0 && \$(wc -l <<<\"\$out\") -eq 1 && \"\$out\" == *'needs root'* ]]"

# ---- 2. doctor -------------------------------------------------------------------------------
as_nobody "$shake" doctor --device "tun:$dev" --addr "$net.2/24" >"$work/doctor" 2>&1
rc=$?
sed "s/^/$me: doctor (nobody): /" "$work/doctor"
check "shake doctor as nobody finds no problem (exit 0)" test $rc -eq 0
in_ns "$shake" doctor --device tun:shknone9 --addr "$net.2/24" >"$work/doctor2" 2>&1
rc=$?
sed "s/^/$me: doctor (no device): /" "$work/doctor2"
check "shake doctor for a missing device exits 1 and names shake setup" \
  bash -c "[[ $rc -eq 1 ]] && grep -q 'no device shknone9.*fix: sudo shake setup' '$work/doctor2'"

# ---- 3. curl as nobody through the stack ----------------------------------------------------
head -c $((1 << 20)) /dev/urandom >"$work/www/blob"
chmod 644 "$work/www/blob"
want=$(sha256sum <"$work/www/blob" | cut -d' ' -f1)
(cd "$work/www" && exec ip netns exec "$ns" "$py" -m http.server --bind "$net.1" 8000 >"$work/http.log" 2>&1) &
echo $! >"$work/http.pid"
up=0
for _ in $(seq 50); do
  in_ns "$py" -c "import socket; socket.create_connection(('$net.1', 8000), 1)" 2>/dev/null && { up=1; break; }
  sleep 0.1
done
((up)) || { cat "$work/http.log"; say "FAIL: the kernel-side http.server did not start"; exit 1; }
rx0=$(in_ns cat "/sys/class/net/$dev/statistics/rx_bytes")
tx0=$(in_ns cat "/sys/class/net/$dev/statistics/tx_bytes")
say "as nobody: shake --device tun:$dev --addr $net.2/24 -- curl http://$net.1:8000/blob"
as_nobody timeout 60 "$shake" --device "tun:$dev" --addr "$net.2/24" -- \
  curl -sS -o "$work/out/blob" "http://$net.1:8000/blob" >"$work/curl.log" 2>&1
crc=$?
sed "s/^/$me: curl: /" "$work/curl.log"
rx1=$(in_ns cat "/sys/class/net/$dev/statistics/rx_bytes")
tx1=$(in_ns cat "/sys/class/net/$dev/statistics/tx_bytes")
check "shake curl as nobody exits 0" test $crc -eq 0
got=$(sha256sum <"$work/out/blob" 2>/dev/null | cut -d' ' -f1)
check "shake curl as nobody fetched 1 MiB byte-exact" test "$got" == "$want"
say "$dev: the stack sent $((rx1 - rx0)) bytes into the kernel, the kernel sent $((tx1 - tx0)) to the stack"
check "the bytes went through the TUN device (the stack), not a kernel socket" \
  test $((tx1 - tx0)) -ge $((1 << 20))

# ---- 3b. shake trace -- curl, as nobody -------------------------------------------------------
# A new stack for the run (a stack that still exists keeps the capture settings it began with).
check "the first run's keeper ended" keeper_gone
say "as nobody: shake trace --device tun:$dev --addr $net.2/24 -- curl http://$net.1:8000/blob"
as_nobody timeout 60 "$shake" trace --device "tun:$dev" --addr "$net.2/24" -- \
  curl -sS -o "$work/out/blob2" "http://$net.1:8000/blob" >"$work/trace.out" 2>"$work/trace.err"
trc=$?
sed "s/^/$me: trace: /" "$work/trace.out" | head -30
sed "s/^/$me: trace (stderr): /" "$work/trace.err"
check "shake trace -- curl as nobody exits 0 (curl's status)" test $trc -eq 0
check "shake trace drew curl's connection to $net.1:8000" \
  grep -q "^Connection 1 of 1: $net.2:[0-9]* . $net.1:8000" "$work/trace.out"
check "the ladder opens with the SYN and ends the connection on both sides" bash -c \
  "grep -q 'SYN seq 0' '$work/trace.out' && grep -q 'FIN' '$work/trace.out'"

# ---- 4. remove -------------------------------------------------------------------------------
keeper_gone
in_ns "$shake" setup --remove --device "$dev" >"$work/remove" 2>&1
rc=$?
sed "s/^/$me: remove: /" "$work/remove"
check "shake setup --remove removes $dev" bash -c "[[ $rc -eq 0 ]] && ! ip -n '$ns' link show dev $dev >/dev/null 2>&1"

say "$failures failure(s) in $((SECONDS - t0)) s"
((failures == 0))
