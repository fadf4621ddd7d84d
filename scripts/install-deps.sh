#!/usr/bin/env bash
# Installs everything libshake needs to build and test, from Debian 12's packages; the last line
# (sockperf, iperf3, linux-perf) is what bench/compare.sh drives besides nginx, ab, wrk and redis.
set -euo pipefail
pkgs=(
  build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
  liburing-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  iproute2 nftables ethtool tcpdump curl nginx-light python3 lintian file redis-server redis-tools
  apache2-utils wrk debootstrap dpkg-dev dpkg-repack
  sockperf iperf3 linux-perf
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
