#!/bin/sh
# deps.sh: are the Debian packages of .ci/packages.txt that a task needs there?
#
#   tools/deps.sh check GROUP...    prints nothing when all are there; else one line
#                                   naming what is missing and the apt-get line, exit 1
#   tools/deps.sh install GROUP...  installs the missing ones with apt-get (as root),
#                                   or prints the sudo line to run and exits 1
#   tools/deps.sh list GROUP...     the packages of those groups
#
# GROUPs are the second column of .ci/packages.txt (build, data, cmake, optional).
# A package counts as there when its program is on the PATH or its header is
# found by the C++ compiler ($CXX, default g++), so headers installed elsewhere
# (or on another distribution) count too.
set -eu
cd "$(dirname "$0")/.."
list=.ci/packages.txt
action=${1:-}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- build
cxx=${CXX:-g++}

# The packages of the groups named on the command line, with their probes.
selected() {
  grep -v '^#' "$list" | while read -r package group kind what; do
    [ -n "$package" ] || continue
    for g in "$@"; do
      [ "$g" = "$group" ] && echo "$package $kind $what"
    done
  done
}

present() {  # kind what
  case $1 in
    program) if [ "$2" = g++ ]; then command -v "$cxx" >/dev/null 2>&1; else command -v "$2" >/dev/null 2>&1; fi ;;
    header) command -v "$cxx" >/dev/null 2>&1 &&
              printf '#include <%s>\n' "$2" | "$cxx" -E -x c++ - >/dev/null 2>&1 ;;
    *) echo "deps.sh: $list: unknown check '$1'" >&2; exit 2 ;;
  esac
}

missing() {
  selected "$@" | while read -r package kind what; do
    present "$kind" "$what" || printf ' %s' "$package"
  done
}

case $action in
  list) selected "$@" | while read -r package _; do printf '%s ' "$package"; done; echo ;;
  check)
    m=$(missing "$@")
    if [ -n "$m" ]; then
      sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo "
      echo "missing packages:$m; install them with: ${sudo}apt-get install$m (or: ${sudo}make deps)"
      exit 1
    fi ;;
  install)
    m=$(missing "$@")
    [ -n "$m" ] || { echo "deps: every package of ($*) is there"; exit 0; }
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "deps: installing$m"
      apt-get -o DPkg::Lock::Timeout=600 update -qq
      # shellcheck disable=SC2086  # one word per package
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq $m >/dev/null
      m=$(missing "$@")
      [ -z "$m" ] || { echo "deps: still missing after apt-get:$m" >&2; exit 1; }
    elif command -v apt-get >/dev/null 2>&1; then
      echo "deps: missing:$m; install them as root: sudo apt-get install$m (or: sudo make deps)" >&2
      exit 1
    else
      echo "deps: missing:$m (Debian names; not a Debian system: install your system's equivalents)" >&2
      exit 1
    fi ;;
  *) echo "usage: tools/deps.sh check|install|list [GROUP...]" >&2; exit 2 ;;
esac
