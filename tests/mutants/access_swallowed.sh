#!/bin/sh
# Mutant agent: access_swallowed.
# Bug: a caller without admin rights who flushes a family the device has (AF_INET, AF_INET6)
# gets STATUS_SUCCESS, with nothing flushed (the rights failure is swallowed). AF_UNSPEC and
# families the device lacks are answered as the shim answers them (ACCESS_DENIED,
# NOT_SUPPORTED), so a RET-ACCESS case that asked with those would pass.
# Should break: RET-ACCESS (test_access_denied).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $2:$out in
        2:'{"status": 3221225506,'* | 23:'{"status": 3221225506,'*) out='{"status": 0, "status_space": "ntstatus"}' ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
