#!/bin/bash
# Runs packetdrill's own TCP scripts (google/packetdrill, gtests/net/tcp) unchanged on both
# conformance backends and prints, per directory and per backend, how many parse and pass,
# with the reason for every failure: a parse error (file:line), an unsupported feature, or a
# behaviour difference (expected and actual packet).
#
#   tests/upstream/run.sh PACKETDRILL_CHECKOUT [BUILD_DIR] [DIR_FILTER]
#
# The repository carries no copy of those scripts: PACKETDRILL_CHECKOUT is a checkout of
# packetdrill. BUILD_DIR holds the conformance_linux and conformance_libshake binaries
# (default: build). DIR_FILTER limits the run to directories matching the regex. IPv4 only:
# scripts named *v6.pkt are left out, as packetdrill's run_all.py does for IPv4. The defines
# are run_all.py's IPv4 ones. Per-script results go to BUILD_DIR/upstream/.
#
# Without a checkout it prints why and exits 77 (skip): its input is external, so this is
# the one test allowed to skip in CI, and it says so.
set -u
checkout=${1:-}
build=${2:-build}
filter=${3:-.}
if [[ -z "$checkout" || ! -d "$checkout/gtests/net/tcp" ]]; then
  echo "SKIP upstream packetdrill scripts: no packetdrill checkout given (set SHAKE_PACKETDRILL_DIR" \
       "or pass its path); the scripts are external input, so this test may skip in CI"
  exit 77
fi
if [[ $EUID -ne 0 ]]; then
  echo "SKIP upstream packetdrill scripts: the linux backend needs root (namespaces, TUN)"
  exit 77
fi
tcp=$(cd "$checkout/gtests/net/tcp" && pwd)
build=$(cd "$build" && pwd) || { echo "no build directory $2"; exit 2; }
out="$build/upstream"
rm -rf "$out"
mkdir -p "$out"
defines=(-D TFO_COOKIE=3021b9d889017eeb -D CODE=host_unreachable -D CMSG_LEVEL_IP=SOL_IP
         -D CMSG_TYPE_RECVERR=IP_RECVERR)
per_script_timeout=${SHAKE_UPSTREAM_TIMEOUT:-120}

classify() {  # result file -> one-word cause
  local f=$1
  if grep -q '^PASS' "$f"; then echo pass
  elif grep -q 'parse error:' "$f"; then echo parse
  elif grep -q ': unsupported: ' "$f"; then echo unsupported
  elif grep -q 'backend setup' "$f"; then echo setup
  elif grep -q '^TIMEOUT' "$f"; then echo timeout
  else echo difference
  fi
}

mapfile -t scripts < <(cd "$tcp" && find . -name '*.pkt' ! -name '*v6.pkt' | sed 's|^\./||' | sort |
                       grep -E "$filter")
for s in "${scripts[@]}"; do
  name=${s%.pkt}
  for b in linux libshake; do
    res="$out/$b/$name.txt"
    mkdir -p "$(dirname "$res")"
    (cd "$tcp/$(dirname "$s")" &&
     timeout "$per_script_timeout" "$build/tests/conformance/conformance_$b" --packetdrill --quiet \
       "${defines[@]}" --name "$name" "$(basename "$s")") > "$res.log" 2>&1
    rc=$?
    if [[ $rc -eq 0 ]]; then echo PASS > "$res"
    elif [[ $rc -eq 124 ]]; then echo "TIMEOUT after ${per_script_timeout}s" > "$res"
    else
      { echo FAIL; grep -v '^RUN ' "$res.log" | sed -n '1,12p'; } > "$res"
    fi
  done
  # The parse is the same for both backends.
  if "$build/tests/conformance/conformance_linux" --parse-only "${defines[@]}" "$tcp/$s" \
       > /dev/null 2>&1; then echo yes > "$out/linux/$name.parse"; else echo no > "$out/linux/$name.parse"; fi
  printf '%-60s linux:%-11s libshake:%s\n' "$name" "$(classify "$out/linux/$name.txt")" \
         "$(classify "$out/libshake/$name.txt")"
done

echo
echo "== per directory (IPv4 scripts) =="
printf '%-22s %7s %7s %11s %11s %14s\n' directory scripts parse linux_pass libshake_pass both_of_linux
tot_n=0 tot_p=0 tot_l=0 tot_s=0 tot_b=0
for d in $(printf '%s\n' "${scripts[@]}" | cut -d/ -f1 | sort -u); do
  n=0 p=0 l=0 sh=0 both=0
  for s in "${scripts[@]}"; do
    [[ ${s%%/*} == "$d" ]] || continue
    name=${s%.pkt}
    n=$((n + 1))
    [[ $(cat "$out/linux/$name.parse") == yes ]] && p=$((p + 1))
    lp=$(classify "$out/linux/$name.txt")
    sp=$(classify "$out/libshake/$name.txt")
    [[ $lp == pass ]] && l=$((l + 1))
    [[ $sp == pass ]] && sh=$((sh + 1))
    [[ $lp == pass && $sp == pass ]] && both=$((both + 1))
  done
  printf '%-22s %7d %7d %11d %11d %14d\n' "$d" $n $p $l $sh $both
  tot_n=$((tot_n + n)) tot_p=$((tot_p + p)) tot_l=$((tot_l + l)) tot_s=$((tot_s + sh)) tot_b=$((tot_b + both))
done
printf '%-22s %7d %7d %11d %11d %14d\n' total $tot_n $tot_p $tot_l $tot_s $tot_b
if [[ $tot_l -gt 0 ]]; then
  echo "of the scripts that pass on linux, $tot_b pass on libshake ($((100 * tot_b / tot_l))%)"
fi

echo
echo "== failures, with their cause =="
for b in linux libshake; do
  for s in "${scripts[@]}"; do
    name=${s%.pkt}
    f="$out/$b/$name.txt"
    c=$(classify "$f")
    [[ $c == pass ]] && continue
    echo "[$b] $name: $c: $(sed -n '2,4p' "$f" | tr '\n' ' ' | cut -c1-400)"
  done
done
echo "$tot_b passed, $((tot_l - tot_b)) failed (libshake, of the $tot_l scripts that pass on linux)"
exit 0
