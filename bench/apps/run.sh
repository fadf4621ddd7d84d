#!/usr/bin/env bash
# bench/apps/run.sh — the nginx rows of bench/compare.sh: nginx on the Linux kernel's TCP and on
# libshake (shake nginx), side by side in one run, under ab (a new connection per request, 1 and
# 2 workers, -c32 and -c50) and wrk (keep-alive), in packet and TUN mode, with the scaling row.
#
# It used to be a script of its own; compare.sh grew out of it (same namespaces helper, a fair
# TUN topology, more rows). This wrapper keeps the old command and its output file:
#
#   sudo bench/apps/run.sh                 # = ROWS="<the nginx rows>" bench/compare.sh
#   sudo N=5000 REPS=1 bench/apps/run.sh   # N is the old name of AB_N
#
# Every knob of compare.sh applies (see its header and bench/README.md); ROWS, if given, wins.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export ROWS=${ROWS:-"ab-c32-w1 ab-c50-w1 ab-c32-w2 ab-c50-w2 wrk-t1-c32 wrk-t2-c50 scaling"}
export OUT=${OUT:-bench/apps/last-run.txt}
if [[ -n ${N:-} && -z ${AB_N:-} ]]; then export AB_N=$N; fi
exec "$here/../compare.sh" "$@"
