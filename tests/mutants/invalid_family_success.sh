#!/bin/sh
# Mutant agent: invalid_family_success.
# Bug: flush returns STATUS_SUCCESS for a family other than 0, 2, 23; the table is untouched
# (the real shim refused it before changing anything).
# Should break: RET-INVALID-FAMILY.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 3221225485,'*) out='{"status": 0, "status_space": "ntstatus"}' ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
