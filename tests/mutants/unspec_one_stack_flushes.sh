#!/bin/sh
# Mutant agent: unspec_one_stack_flushes.
# Bug: AF_UNSPEC on a device with exactly one stack answers STATUS_NOT_SUPPORTED, as the
# defensible variant does, but flushes that stack first anyway.
# Should break: NOCHANGE-ON-ERROR (the AF_UNSPEC scope cases and IDEMPOTENT on a one-stack device).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && [ "$2" = 0 ] && scope_of "$2" "$3"; then
    case $(sh "$SHIM" stacks) in
        *'"ipv4": true, "ipv6": false'* | *'"ipv4": false, "ipv6": true'*)
            sh "$SHIM" "$@" >/dev/null
            printf '{"status": 3221225659, "status_space": "ntstatus"}\n'; exit 0 ;;
    esac
fi
exec sh "$SHIM" "$@"
