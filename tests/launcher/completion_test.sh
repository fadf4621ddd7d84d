#!/usr/bin/env bash
# packaging/shake.bash-completion: what it offers for the sub-commands, their options and the
# run mode, called the way bash calls it (COMP_WORDS, COMP_CWORD) with and without the
# bash-completion package's helpers.
#   completion_test.sh COMPLETION_FILE
set -uo pipefail
file=$1
fails=0
# compopt only works inside a real completion; here it is a no-op.
compopt() { :; }
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
  # shellcheck disable=SC1091
  source /usr/share/bash-completion/bash_completion
fi
# shellcheck disable=SC1090
source "$file"
offer() {  # description, expected words (space-separated, all must be offered), then the words typed
  local what=$1 want=$2; shift 2
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMP_LINE="${COMP_WORDS[*]}"
  COMP_POINT=${#COMP_LINE}
  COMPREPLY=()
  _shake
  local w missing=""
  for w in $want; do
    grep -qx -- "$w" < <(printf "%s\n" "${COMPREPLY[@]}") || missing+=" $w"
  done
  if [[ -n "$missing" ]]; then
    echo "FAIL: $what: missing$missing (offered: ${COMPREPLY[*]:0:12})"; fails=$((fails + 1))
  else
    echo "ok: $what"
  fi
}
offer "sub-commands" "trace setup doctor stat" shake ""
offer "sub-command by prefix" "trace" shake tr
offer "run options" "--device --addr --pcap --trace --log --" shake --
offer "log levels" "error warn info debug" shake --log ""
offer "device kinds" "tun: packet:" shake --device ""
offer "devices by name" "tun:lo" shake --device tun:
offer "trace options" "--pcap --log --svg --connection --list --ascii --absolute --no-fold" shake trace --
offer "trace run options" "--device --log-level" shake trace --
offer "setup options" "--user --group --device --addr --recreate --remove" shake setup --
offer "setup users" "root" shake setup --user ro
offer "doctor options" "--device --addr --verbose" shake doctor --
((fails == 0)) || { echo "$fails failure(s)"; exit 1; }
