#!/bin/sh
# Mutant agent: error_then_flush.
# Bug: a flush it refuses for an invalid family (STATUS_INVALID_PARAMETER: the right answer,
# and nothing has changed when the call returns) is carried out anyway 0.2 s later, in the
# background, as AF_UNSPEC on the same InterfaceIndex.
# Should break: DURABLE (test_durable: its invalid-family call).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 3221225485,'*)
            case $3 in
                '' | *[!0-9]*) ;;
                *) in_background sh "$SHIM" flush 0 "$3" ;;
            esac ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
