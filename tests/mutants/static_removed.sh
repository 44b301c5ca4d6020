#!/bin/sh
# Mutant agent: static_removed.
# Bug: a successful flush also deletes the static (PERMANENT) entries outside its scope: of the
# other family, or on the other interfaces. Reports SUCCESS.
# Should break: NO-COLLATERAL (and IF-ONE / FAM-INET / FAM-INET6 for the scope asked).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            outside "$2" "$DEV" | awk '$4 == "PERMANENT" { print "neigh del " $1 " dev " $2 }' | ip -force -batch - 2>/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
