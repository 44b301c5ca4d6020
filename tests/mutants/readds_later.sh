#!/bin/sh
# Mutant agent: readds_later.
# Bug: a daemon puts back what a flush removed: 0.2 s after a successful flush (in the
# background, after the reply), the dynamic entries it removed that had a link-layer address
# are back, STALE, with the same link-layer address. When the call returns the table is right.
# Should break: DURABLE (test_durable).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    back=$(entries "$FAM" | awk -v dev="$DEV" '
        (dev == "" || $2 == dev) && $3 != "-" && $4 ~ /^(STALE|REACHABLE|DELAY|PROBE)$/ {
            print "neigh replace " $1 " lladdr " $3 " dev " $2 " nud stale"
        }')
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*) [ -z "$back" ] || in_background sh -c 'printf "%s\n" "$1" | ip -force -batch -' sh "$back" ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
