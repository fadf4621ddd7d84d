#!/usr/bin/env bash
# Golden files for `shake trace` (issue 11): the conformance scenarios played between two stacks
# in virtual time (trace_scenarios), drawn from the capture, from the trace log, and from both;
# text (UTF-8 and ASCII) and SVG must equal tests/launcher/golden/. Also checks what holds for
# every drawing: no line wider than 79 columns, nothing on stderr (a warning there means the log
# and the capture disagreed), every SVG parses as XML with one arrow per segment row, and the
# inferred states of the logging host equal the states its own log reports.
#
#   trace_golden_test.sh SHAKE TRACE_SCENARIOS GOLDEN_DIR
#   UPDATE_GOLDEN=1 trace_golden_test.sh ...    rewrites GOLDEN_DIR from this build instead
set -uo pipefail
shake=$(readlink -f "$1")
gen=$(readlink -f "$2")
golden=$(readlink -f "$3")
me=trace_golden
out=$(mktemp -d /tmp/shake-trace-golden.XXXXXX)
trap 'rm -rf "$out"' EXIT
fails=0
fail() { echo "$me: FAIL: $*"; fails=$((fails + 1)); }

command -v python3 >/dev/null || { echo "$me: python3 is needed for the SVG check"; exit 1; }
"$gen" "$out" || { echo "$me: trace_scenarios failed"; exit 1; }
cd "$out" || exit 1   # relative names: the drawings name their sources

scenarios=(handshake simultaneous_open simultaneous_close half_close lost_fin rst time_wait_reack)
# name | arguments of shake trace (files relative to $out)
cases=()
for s in "${scenarios[@]}"; do
  cases+=("$s|--pcap $s.pcap --log $s.log --svg $s.svg")
  cases+=("$s.pcap|--pcap $s.pcap")
done
cases+=("handshake.log|--log handshake.log")
cases+=("handshake.ascii|--ascii --pcap handshake.pcap --log handshake.log")
cases+=("handshake.raw|--absolute --no-fold --pcap handshake.pcap")
cases+=("lost_fin.both|--log lost_fin.both.log --svg lost_fin.both.svg")
cases+=("rst.list|--list --pcap rst.pcap")
cases+=("rst.port81|-c :81 --pcap rst.pcap --log rst.log")

for c in "${cases[@]}"; do
  name=${c%%|*}
  read -r -a args <<<"${c#*|}"
  "$shake" trace "${args[@]}" >"$name.txt" 2>"$name.err"
  rc=$?
  [[ $rc -eq 0 ]] || fail "$name: shake trace ${args[*]} exited $rc: $(head -3 "$name.err")"
  [[ -s "$name.err" ]] && fail "$name: stderr: $(head -3 "$name.err")"
  wide=$(python3 -c 'import sys; print(max((len(l.rstrip("\n")) for l in open(sys.argv[1], encoding="utf-8")), default=0))' "$name.txt")
  ((wide <= 79)) || fail "$name: a line is $wide columns wide"
  files=("$name.txt")
  [[ -f "$name.svg" ]] && files+=("$name.svg")
  for f in "${files[@]}"; do
    if [[ "${UPDATE_GOLDEN:-}" == 1 ]]; then
      cp "$f" "$golden/$f"
    elif ! diff -u "$golden/$f" "$f" >"$f.diff"; then
      fail "$f differs from golden/$f:"; head -40 "$f.diff"
    fi
  done
done

# Every SVG is well-formed XML, with one arrow (a <line> with a stroke colour) per segment row.
for svg in *.svg; do
  if ! python3 - "$svg" "${svg%.svg}.txt" <<'EOF'
import re, sys, xml.etree.ElementTree as ET
svg, txt = sys.argv[1], sys.argv[2]
root = ET.parse(svg).getroot()
ns = "{http://www.w3.org/2000/svg}"
if root.tag != ns + "svg":
    sys.exit(f"{svg}: the root is {root.tag}, not svg")
arrows = [l for l in root.iter(ns + "line") if l.get("stroke")]
rows = [l for l in open(txt, encoding="utf-8") if re.match(r"^ *[0-9.]+ .*[├┤]", l)]
if len(arrows) != len(rows):
    sys.exit(f"{svg}: {len(arrows)} arrows for {len(rows)} segment rows in {txt}")
EOF
  then
    fail "$svg is not a well-formed ladder"
  fi
done

# The logging host's states, inferred from the capture alone, against what its log says: the
# inference (infer.cc) must agree with the stack on every segment row of the capture at the
# stack's own device.
for s in "${scenarios[@]}"; do
  left() { grep -E '^ *[0-9.]+ ' "$1" | grep -E '[├┤]' | awk '{print $1, $2}'; }
  if ! diff <(left "$s.txt") <(left "$s.pcap.txt") >/dev/null; then
    fail "$s: the states inferred for 198.18.0.1 differ from its log:"
    diff <(left "$s.txt") <(left "$s.pcap.txt") | head -10
  fi
done

n=$(( ${#cases[@]} ))
if [[ "${UPDATE_GOLDEN:-}" == 1 ]]; then
  echo "$me: golden files rewritten in $golden"
fi
echo "$me: $n drawings, $(ls *.svg | wc -l) SVGs checked, $fails failure(s)"
((fails == 0))
