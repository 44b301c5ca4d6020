#!/bin/sh
# Mutant agent: static_incomplete.
# Bug: a successful flush moves the static (PERMANENT) entries outside its scope to INCOMPLETE
# (the kernel then shows them without a link-layer address) instead of leaving them alone.
# Reports SUCCESS.
# Should break: NO-COLLATERAL.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            outside "$2" "$DEV" | awk '$4 == "PERMANENT" { print "neigh replace " $1 " dev " $2 " nud incomplete" }' |
                ip -force -batch - 2>/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
