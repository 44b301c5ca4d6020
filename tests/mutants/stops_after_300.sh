#!/bin/sh
# Mutant agent: stops_after_300.
# Bug: a flush deletes at most 300 entries (the first 300 dynamic entries in its scope that
# ip lists), as an implementation that handles one batch or one dump, and reports SUCCESS.
# Should break: FAM-UNSPEC and IF-ALL / IF-ONE in the scale cases (test_flush_scale); the
# cases at --entries (32 per family per link) see nothing.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    admin_caller || exec sh "$SHIM" "$@"  # the shim answers ACCESS_DENIED
    out=$(sh "$SHIM" stacks)
    case $2:$out in
        2:*'"ipv4": false'* | 23:*'"ipv6": false'*) exec sh "$SHIM" "$@" ;;
    esac
    entries "$FAM" | awk -v dev="$DEV" '
        (dev == "" || $2 == dev) && $4 != "PERMANENT" && $4 != "NOARP" && n < 300 { n++; print "neigh del " $1 " dev " $2 }' |
        ip -force -batch - 2>/dev/null
    printf '{"status": 0, "status_space": "ntstatus"}\n'
    exit 0
fi
exec sh "$SHIM" "$@"
