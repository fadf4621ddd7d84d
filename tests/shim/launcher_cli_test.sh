#!/usr/bin/env bash
# The shake launcher's command line: help, one-line configuration errors with exit status 2,
# 127 for a missing command, the static-program warning, and LD_PRELOAD/SHAKE_* passed on.
#   launcher_cli_test.sh SHAKE
set -uo pipefail
shake=$1
fails=0
check() {  # description, expected status, expected stderr regex (one line), command...
  local what=$1 want=$2 pattern=$3; shift 3
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  if [[ $rc -ne $want ]]; then
    echo "FAIL: $what: exit $rc, want $want ($err)"; fails=$((fails + 1)); return
  fi
  if [[ -n "$pattern" ]]; then
    if [[ $(printf '%s\n' "$err" | wc -l) -ne 1 || ! "$err" =~ $pattern ]]; then
      echo "FAIL: $what: stderr '$err' is not one line matching '$pattern'"; fails=$((fails + 1))
      return
    fi
  fi
  echo "ok: $what"
}
E=(env -u SHAKE_DEVICE -u SHAKE_ADDR -u SHAKE_GATEWAY -u SHAKE_LOG -u SHAKE_PCAP -u SHAKE_TRACE
   -u SHAKE_FALLBACK)
check "help" 0 "" "${E[@]}" "$shake" --help
check "no command" 2 "^shake: no command given" "${E[@]}" "$shake"
check "no device" 2 "^shake: no device: pass --device" "${E[@]}" "$shake" true
check "unknown option" 2 "^shake: unknown option --bogus" "${E[@]}" "$shake" --bogus true
check "missing prefix" 2 "^shake: --addr \(SHAKE_ADDR\) 198.18.0.2: no prefix length" \
  "${E[@]}" "$shake" --device packet:lo --addr 198.18.0.2 true
check "bad log level" 2 "^shake: --log \(SHAKE_LOG\) loud: unknown level" \
  "${E[@]}" "$shake" --log loud --device packet:lo --addr 198.18.0.2/24 true
check "variable error names the variable" 2 "^shake: SHAKE_ADDR=x/24: not an IPv4 address" \
  "${E[@]}" SHAKE_DEVICE=packet:lo SHAKE_ADDR=x/24 "$shake" true
check "no such device" 2 "^shake: --device \(SHAKE_DEVICE\) tun:shknodev9: no such device.*ip tuntap add" \
  "${E[@]}" "$shake" --device tun:shknodev9 --addr 198.18.0.2/24 true
check "not a tun device" 2 "not a TUN device" \
  "${E[@]}" "$shake" --device tun:lo --addr 198.18.0.2/24 true
check "command not found" 127 "^shake: shake-no-such-cmd: command not found" \
  "${E[@]}" "$shake" --device packet:lo --addr 198.18.0.2/24 -- shake-no-such-cmd
if [[ $(id -u) -eq 0 ]]; then  # packet: needs CAP_NET_RAW
  out=$("${E[@]}" "$shake" --device=packet:lo --addr=198.18.0.2/24 --log info -- \
        sh -c 'echo "$LD_PRELOAD|$SHAKE_DEVICE|$SHAKE_ADDR|$SHAKE_LOG"' 2>/dev/null)
  if [[ "$out" =~ libshake\.so\|packet:lo\|198\.18\.0\.2/24\|info$ ]]; then
    echo "ok: variables passed on"
  else
    echo "FAIL: variables passed on: '$out'"; fails=$((fails + 1))
  fi
  static=$(command -v ldconfig || true)
  if [[ -n "$static" ]] && ! file -L "$static" 2>/dev/null | grep -q dynamically; then
    check "static warning" 0 "^shake: warning: .* is statically linked" \
      "${E[@]}" "$shake" --device packet:lo --addr 198.18.0.2/24 -- "$static" --version
  fi
fi
((fails == 0)) || { echo "$fails failure(s)"; exit 1; }
