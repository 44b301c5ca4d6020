#!/bin/sh
# Mutant agent: nostack_success.
# Bug: flush returns STATUS_SUCCESS instead of STATUS_NOT_SUPPORTED when the requested
# family's stack is absent (nothing is flushed).
# Should break: RET-NOSTACK-INET6 (and RET-NOSTACK-INET on a device without IPv4).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 3221225659,'*) out='{"status": 0, "status_space": "ntstatus"}' ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
