#!/usr/bin/env bash
# The .deb as a user gets it (issue 5: "dpkg -i on a clean Debian 12 machine followed by
# `shake curl ...` works; lintian has no errors"):
#   1. builds it (the build tree's `package` target, i.e. CPack), checks `dpkg-deb -c` lists
#      the library in /usr/lib/MULTIARCH, /usr/bin/shake, shake(1) and the docs, and runs
#      lintian on it: no E: line (warnings are printed);
#   2. installs it with dpkg -i on a clean Debian 12 root made with debootstrap (minbase + curl,
#      from the machine's own Debian mirror, cached under the build dir), completing missing
#      Depends the documented way (apt-get -f install); checks `shake --help`, that
#      `ldd libshake.so` resolves everything in that root, and that every library ldd names
#      belongs to a package the deb's Depends lists; then, in a private network namespace with
#      a TUN device, runs `chroot ROOT shake --device tun:IF --addr A -- curl http://KERNEL/`
#      against a kernel-side python3 http.server and compares the bytes (sha256) and the TUN
#      device's counters (the bytes went through the stack, not a kernel socket);
#   3. removes what it made, also on failure: the namespace and its processes, the package in the
#      root (purged with the dependencies it pulled in, so the cached root stays clean), and
#      the root's /proc and /dev, which are only ever mounted in a private mount namespace so
#      that they cannot outlive the test.
#
#   install_test.sh BUILD_DIR
#
# Why a debootstrap root: it is the faithful "clean Debian 12 machine", and it leaves the
# machine running the test untouched. Measured here: debootstrap --variant=minbase
# --include=curl bookworm plus apt-get update take 83 s on an idle machine (2 min 56 s while a
# -j2 build shared the two cores) and 328 MB; the root is made once and kept in
# BUILD_DIR/tests/packaging/bookworm-root, so a rerun takes about 10 s. When the root cannot be made (no debootstrap, the mirror unreachable, or
# SHAKE_TEST_NO_CHROOT=1), the test falls back to dpkg -i on this machine itself -- but only
# when CI=true or SHAKE_TEST_INSTALL=1 say that is wanted, since it changes the machine (it
# removes the package afterwards and puts back the package if it was installed before);
# otherwise it skips with the reason.
#
# Network: only Debian's package mirror (debootstrap, and apt-get inside the root); the
# test's own packets stay in the namespace it creates (198.18.30.0/24).
# Skips (exit 77) with the reason without root or a needed program; fails instead when CI=true.
set -uo pipefail
build=$(readlink -f "${1:?usage: install_test.sh BUILD_DIR}")
ns="shkpkg-$$"
subnet=198.18.30
me=install_test

say() { echo "$me: $*"; }
skip() {
  say "SKIP: $1"
  [[ "${CI:-}" == true ]] && { echo "$me: CI=true: not skipping" >&2; exit 1; }
  exit 77
}
die() { say "FAIL: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || skip "not root: installing a package, chroot and a TUN namespace need root"
for p in dpkg-deb dpkg-architecture lintian ip unshare chroot sha256sum flock; do
  command -v "$p" >/dev/null || skip "$p is not installed (scripts/install-deps.sh installs it)"
done
py=/usr/bin/python3
[[ -x $py ]] || py=$(readlink -f "$(command -v python3)") || skip "python3 is not installed"
[[ -c /dev/net/tun ]] || skip "no /dev/net/tun"
ip netns add "$ns-probe" 2>/dev/null || skip "cannot create network namespaces"
ip netns del "$ns-probe"

ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null) || ma=$(gcc -print-multiarch)
[[ -n "$ma" ]] || die "no multiarch triplet"
state="$build/tests/packaging"
mkdir -p "$state"
# One run at a time per build tree: the cached root is shared.
exec 9>"$state/lock"
flock -w 1200 9 || die "another install_test holds $state/lock"

work=$(mktemp -d /tmp/shkpkg.XXXXXX)
root="$state/bookworm-root"
pkg=""               # the package's name, from the .deb
mode=""              # chroot or host, once the package is installed
host_restore=""      # a .deb of the package as installed on the host before (host mode)
host_installed=0

in_root() {  # COMMAND...: runs in the root with /proc, /sys (of the current network namespace:
             # the launcher reads /sys/class/net/IF) and /dev, in a private mount namespace
  unshare -m --propagation private sh -c '
    r=$1; shift
    mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" && mount --rbind /dev "$r/dev" || exit 125
    exec chroot "$r" "$@"' sh "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
    LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"
}
in_ns() { ip netns exec "$ns" "$@"; }

cleanup() {
  local rc=$?
  set +e
  [[ -f "$work/http.pid" ]] && kill "$(cat "$work/http.pid")" 2>/dev/null
  ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$ns" 2>/dev/null
  if [[ "$mode" == chroot && -d "$root" && -n "$pkg" ]]; then
    in_root dpkg --purge "$pkg" >/dev/null 2>&1
    in_root apt-get -y -qq autoremove --purge >/dev/null 2>&1
    rm -f "$root"/tmp/*.deb "$root/tmp/out"
  fi
  if ((host_installed)); then
    # --purge, not -r: -r leaves the package known to dpkg (state rc, for its postrm).
    dpkg --purge "$pkg" >/dev/null 2>&1 || say "cleanup: dpkg --purge $pkg failed"
    if [[ -n "$host_restore" ]]; then
      if dpkg -i "$host_restore" >/dev/null 2>&1; then rm -f "$host_restore"
      else say "cleanup: could not reinstall the previous package from $host_restore (kept)"; fi
    fi
  fi
  # Mounts are made only inside private mount namespaces; this only reports a leak, if any.
  if [[ -d "$root" ]] && grep -q " $root/" /proc/self/mounts; then
    say "cleanup: mounts left under $root:"; grep " $root/" /proc/self/mounts
    rc=1
  fi
  rm -rf "$work"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Namespaces left by a killed run.
for old in $(ip netns list 2>/dev/null | awk '{print $1}'); do
  if [[ "$old" =~ ^shkpkg-([0-9]+)$ ]] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; then
    ip netns del "$old" 2>/dev/null
  fi
done

failures=0
check() {  # description, then a command that must succeed
  local what=$1; shift
  if "$@"; then say "ok: $what"; else say "FAIL: $what"; failures=$((failures + 1)); fi
}
t0=$SECONDS

# ---- 1. build the package, its contents, lintian -------------------------------------------
say "building the package (cmake --build $build --target package)"
cmake --build "$build" --target package >"$work/cpack.log" 2>&1 || { cat "$work/cpack.log"; die "the package target failed"; }
deb=$(sed -n 's/^CPack: - package: \(.*\.deb\) generated\.$/\1/p' "$work/cpack.log" | tail -1)
[[ -n "$deb" ]] || deb=$(ls -t "$build"/*.deb 2>/dev/null | head -1)
[[ -f "$deb" ]] || { cat "$work/cpack.log"; die "no .deb in $build"; }
pkg=$(dpkg-deb -f "$deb" Package)
version=$(dpkg-deb -f "$deb" Version)
say "package: $deb: $pkg $version, $(stat -c %s "$deb") bytes, built in $((SECONDS - t0)) s"
dpkg-deb -f "$deb" | sed "s/^/$me:   /"

dpkg-deb -c "$deb" >"$work/contents"
awk '{print $1, $6}' "$work/contents" | sed "s/^/$me:   /"
for f in "./usr/lib/$ma/libshake.so" ./usr/bin/shake ./usr/share/man/man1/shake.1.gz \
         "./usr/share/doc/$pkg/copyright" "./usr/share/doc/$pkg/changelog.Debian.gz" \
         "./usr/share/doc/$pkg/README.md"; do
  check "the package has $f" grep -q " $f\$" "$work/contents"
done
check "/usr/bin/shake is executable" bash -c "grep -E ' \./usr/bin/shake\$' '$work/contents' | grep -q '^-rwxr-xr-x'"
check "nothing outside /usr" bash -c "! awk '{print \$6}' '$work/contents' | grep -vE '^\./(usr(/.*)?)?\$'"

lintian --no-tag-display-limit "$deb" >"$work/lintian" 2>&1
lrc=$?
sed "s/^/$me: lintian: /" "$work/lintian"
say "lintian: exit $lrc, $(grep -c '^E:' "$work/lintian") error(s), $(grep -c '^W:' "$work/lintian") warning(s), $(grep -c '^I:' "$work/lintian") info(s)"
check "lintian reports no E: line" bash -c "! grep -q '^E:' '$work/lintian'"

# The Depends field against what the library really links (on this machine, the build host).
depends=$(dpkg-deb -f "$deb" Depends)
say "Depends: $depends"
dep_names=$(tr ',|' '\n\n' <<<"$depends" | sed 's/(.*)//; s/:any//; s/ //g' | grep -v '^$' | sort -u)
mkdir -p "$work/x"
dpkg-deb -x "$deb" "$work/x"
# Every manual page in docs/ ships, compressed, byte for byte the source, and renders without a
# warning from man.
src=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
for page in "$src"/docs/*.[1-8]; do
  name=$(basename "$page"); section=${name##*.}
  gz="./usr/share/man/man$section/$name.gz"
  check "the package has $gz, the same as docs/$name" bash -c "
    grep -q ' ${gz//./\\.}\$' '$work/contents' && zcat '$work/x/$gz' | cmp -s - '$page'"
  if command -v man >/dev/null; then
    check "$gz renders without a warning" bash -c "
      out=\$(MANWIDTH=80 man -l --warnings '$work/x/$gz' 2>&1 >/dev/null); [[ -z \$out ]] || { echo \"\$out\"; false; }"
  fi
done
: >"$work/ldd.host"
for f in "usr/lib/$ma/libshake.so" usr/bin/shake usr/libexec/libshake/shake-keeper; do
  ldd "$work/x/$f" >"$work/ldd.one" 2>&1
  sed "s|^|$me: ldd /$f (build host): |" "$work/ldd.one"
  check "ldd /$f resolves everything on the build host" bash -c "! grep -q 'not found' '$work/ldd.one' && grep -q '=> /' '$work/ldd.one'"
  cat "$work/ldd.one" >>"$work/ldd.host"
done
owner_of() {  # a library path -> the package that ships it (usrmerge: try both spellings)
  local p=$1 c
  for c in "$p" "$(readlink -f "$p")" "${p#/usr}" "/usr$p"; do
    dpkg -S "$c" 2>/dev/null | head -1 | cut -d: -f1 | cut -d, -f1 && return 0
  done
  return 1
}
while read -r lib path; do
  [[ "$path" == /* ]] || continue
  owner=$(owner_of "$path") || { say "FAIL: no package owns $path ($lib)"; failures=$((failures + 1)); continue; }
  check "Depends lists $owner (for $lib)" grep -qx "$owner" <<<"$dep_names"
  echo "$owner" >>"$work/owners"
done < <(awk '$2 == "=>" {print $1, $3} $1 ~ /^\// {print $1, $1}' "$work/ldd.host" | sort -u)
# And the other way: nothing in Depends that no shipped binary links (liburing2 was listed long
# after libshake.so stopped linking it).
while read -r dep; do
  check "Depends' $dep is linked by a shipped binary" grep -qx "$dep" "$work/owners"
done <<<"$dep_names"

# ---- 2. a clean Debian 12 root --------------------------------------------------------------
mirror() {  # the machine's configured Debian mirror for bookworm (main archive, not security)
  [[ -n "${SHAKE_DEBIAN_MIRROR:-}" ]] && { echo "$SHAKE_DEBIAN_MIRROR"; return; }
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      { uris = ""; suites = ""; types = ""; on = 1
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) uris = substr($i, 6)
          if ($i ~ /^Suites:/) suites = " " substr($i, 8) " "
          if ($i ~ /^Types:/) types = " " substr($i, 7) " "
          if ($i ~ /^Enabled: *no/) on = 0 }
        if (on && types ~ / deb / && suites ~ / bookworm /) { split(uris, u, " "); print u[1] } }' "$f"
  done
  [[ -f /etc/apt/sources.list ]] &&
    awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) while ($i !~ /\]$/) i++; if ($2 ~ /^\[/) i++;
                       if ($(i + 1) == "bookworm") print $i }' /etc/apt/sources.list
}
make_root() {
  command -v debootstrap >/dev/null || { say "debootstrap is not installed"; return 1; }
  local m
  m=$(mirror | grep -i debian | grep -v -- -security | head -1)
  [[ -n "$m" ]] || { say "no Debian bookworm mirror in /etc/apt/sources.list*"; return 1; }
  local stamp="minbase bookworm curl $m"
  if [[ -f "$root/.shake-root" && "$(cat "$root/.shake-root")" == "$stamp" && -x "$root/usr/bin/curl" ]]; then
    say "clean Debian 12 root: cached ($root, from $m)"
    return 0
  fi
  rm -rf "$root" "$root.new"
  say "debootstrap --variant=minbase --include=curl bookworm from $m (once; cached for reruns)"
  local t=$SECONDS
  if ! timeout "${SHAKE_DEBOOTSTRAP_TIMEOUT:-900}" debootstrap --variant=minbase --include=curl \
        bookworm "$root.new" "$m" >"$work/debootstrap.log" 2>&1; then
    tail -20 "$work/debootstrap.log" | sed "s/^/$me: debootstrap: /"
    rm -rf "$root.new"
    say "debootstrap failed after $((SECONDS - t)) s"
    return 1
  fi
  # The package lists, so that apt-get -f install can complete the Depends (from the same mirror).
  cp /etc/resolv.conf "$root.new/etc/resolv.conf" 2>/dev/null
  if ! root="$root.new" in_root apt-get -qq update >"$work/apt-update.log" 2>&1; then
    sed "s/^/$me: apt-get update: /" "$work/apt-update.log"; rm -rf "$root.new"; return 1
  fi
  echo "$stamp" >"$root.new/.shake-root"
  mv "$root.new" "$root"
  say "debootstrap took $((SECONDS - t)) s ($(du -sh "$root" | cut -f1))"
}

if [[ "${SHAKE_TEST_NO_CHROOT:-}" != 1 ]] && make_root; then
  mode=chroot
  # A clean machine: a package left by a killed run goes first.
  in_root dpkg-query -W "$pkg" >/dev/null 2>&1 && { in_root dpkg --purge "$pkg" >/dev/null; in_root apt-get -y -qq autoremove --purge >/dev/null; }
  # Debian must not have a package of that name: apt would take ours for an old version of it
  # and replace it (it did, when the package was called shake: bookworm's shake is a Lua tool).
  if in_root apt-cache show "$pkg" >"$work/apt-show" 2>/dev/null; then
    say "FAIL: Debian bookworm already has a package named $pkg:"; grep -E '^(Version|Description):' "$work/apt-show" | sed "s/^/$me:   /"
    failures=$((failures + 1))
  else
    say "ok: no package named $pkg in Debian bookworm"
  fi
  cp "$deb" "$root/tmp/"
  b=$(basename "$deb")
  say "chroot: dpkg -i /tmp/$b"
  if ! in_root dpkg -i "/tmp/$b" >"$work/dpkg.log" 2>&1; then
    # What a user on a clean machine does next: dpkg reports the Depends it lacks, apt fetches them.
    grep -E 'depends on|not installed' "$work/dpkg.log" | sed "s/^/$me: dpkg: /"
    say "chroot: apt-get -f install (the Depends a minbase root lacks)"
    in_root apt-get -y -q -f install --no-install-recommends >"$work/apt.log" 2>&1 || { cat "$work/dpkg.log" "$work/apt.log"; die "apt-get -f install failed in the root"; }
    grep -E '^(Setting up|Unpacking)' "$work/apt.log" | sed "s/^/$me: apt: /"
  fi
  check "$pkg $version is installed in the root (dpkg status ii)" bash -c "[[ \$(chroot '$root' dpkg-query -W -f='\${db:Status-Abbrev} \${Version}' '$pkg') == 'ii  $version' ]]"
  run() { in_root "$@"; }
  out_dir="$root/tmp"; out_in=/tmp
else
  # Fallback: no root could be made. dpkg -i on this machine changes it, so only when asked.
  if [[ "${CI:-}" != true && "${SHAKE_TEST_INSTALL:-}" != 1 ]]; then
    skip "no clean Debian root (see above); set SHAKE_TEST_INSTALL=1 to dpkg -i on this machine instead"
  fi
  mode=host
  if dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null | grep -q '^ii'; then
    command -v dpkg-repack >/dev/null || die "$pkg is installed here and dpkg-repack is missing to put it back afterwards"
    mkdir -p "$state/previous"
    (cd "$state/previous" && dpkg-repack "$pkg" >/dev/null 2>&1) || die "dpkg-repack $pkg failed"
    host_restore=$(ls -t "$state/previous/${pkg}"_*.deb | head -1)
    say "host: the installed $pkg is saved as $host_restore and goes back afterwards"
  fi
  host_installed=1
  say "host: dpkg -i $deb"
  if ! dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then
    cat "$work/dpkg.log"
    DEBIAN_FRONTEND=noninteractive apt-get -y -q -f install --no-install-recommends || die "apt-get -f install failed"
  fi
  check "$pkg $version is installed (dpkg status ii)" bash -c "[[ \$(dpkg-query -W -f='\${db:Status-Abbrev} \${Version}' '$pkg') == 'ii  $version' ]]"
  run() { "$@"; }
  out_dir="$work"; out_in="$work"
fi

# The installed files, from inside the system they are installed in.
check "installed: /usr/bin/shake and /usr/lib/$ma/libshake.so exist" run test -x /usr/bin/shake -a -f "/usr/lib/$ma/libshake.so"
run /usr/bin/shake --help >"$work/help" 2>&1
check "installed: shake --help exits 0 and prints its usage" bash -c "head -1 '$work/help' | grep -q '^usage: shake'"
run ldd "/usr/lib/$ma/libshake.so" >"$work/ldd.inst" 2>&1
sed "s/^/$me: ldd ($mode): /" "$work/ldd.inst"
check "installed: ldd libshake.so resolves everything" bash -c "! grep -q 'not found' '$work/ldd.inst' && grep -q '=> /' '$work/ldd.inst'"
run ldd /usr/bin/shake >"$work/ldd.shake" 2>&1
check "installed: ldd /usr/bin/shake resolves everything" bash -c "! grep -q 'not found' '$work/ldd.shake' && grep -q '=> /' '$work/ldd.shake'"

# ---- shake curl on the installed package ----------------------------------------------------
ip netns add "$ns" || die "ip netns add"
ip -n "$ns" link set lo up
ip -n "$ns" tuntap add dev shk0 mode tun
ip -n "$ns" addr add "$subnet.1/24" dev shk0
ip -n "$ns" link set shk0 up
mkdir -p "$work/www"
head -c $((4 << 20)) /dev/urandom >"$work/www/blob"
want=$(sha256sum <"$work/www/blob" | cut -d' ' -f1)
(cd "$work/www" && exec ip netns exec "$ns" "$py" -m http.server --bind "$subnet.1" 8000 >"$work/http.log" 2>&1) &
echo $! >"$work/http.pid"
up=0
for _ in $(seq 50); do
  in_ns "$py" -c "import socket; socket.create_connection(('$subnet.1', 8000), 1)" 2>/dev/null && { up=1; break; }
  sleep 0.1
done
((up)) || { cat "$work/http.log"; die "the kernel-side http.server did not start"; }

rx0=$(in_ns cat /sys/class/net/shk0/statistics/rx_bytes)
rm -f "$out_dir/out"
say "$mode: shake --device tun:shk0 --addr $subnet.2/24 -- curl http://$subnet.1:8000/blob"
in_ns timeout 60 bash -c "$(declare -f in_root); root='$root'; $(declare -f run); run /usr/bin/shake --device tun:shk0 --addr $subnet.2/24 -- curl -sS -o $out_in/out http://$subnet.1:8000/blob" >"$work/curl.log" 2>&1
crc=$?
sed "s/^/$me: curl: /" "$work/curl.log"
rx1=$(in_ns cat /sys/class/net/shk0/statistics/rx_bytes)
tx1=$(in_ns cat /sys/class/net/shk0/statistics/tx_bytes)
check "installed shake curl exits 0" test $crc -eq 0
got=$(sha256sum <"$out_dir/out" 2>/dev/null | cut -d' ' -f1)
check "installed shake curl fetched 4 MiB byte-exact (sha256 $want)" test "$got" == "$want"
say "shk0: the stack sent $((rx1 - rx0)) bytes into the kernel, the kernel sent $tx1 bytes to the stack"
# A kernel socket would reach the kernel's own address without touching shk0.
check "the transfer went through libshake's stack on the TUN device" test "$tx1" -ge $((4 << 20))

say "$failures failure(s); $mode install; $((SECONDS - t0)) s"
((failures == 0))
