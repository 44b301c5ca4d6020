#!/bin/sh
# Mutant agent: flush_reports_error.
# Bug: flush does its work but reports STATUS_UNSUCCESSFUL (0xC0000001) instead of SUCCESS.
# Should break: RET-SUCCESS, NOCHANGE-ON-ERROR (a call that "failed" changed the table),
# IDEMPOTENT.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*) out='{"status": 3221225473, "status_space": "ntstatus"}' ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
