#!/bin/sh
# Mutant agent: ignore_ifindex.
# Bug: flush ignores InterfaceIndex and always flushes every interface (index 0).
# Should break: IF-ONE, NO-COLLATERAL (entries on the other interfaces go too) and
# OBS-BAD-INDEX shows SUCCESS instead of NOT_FOUND.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ] && [ $# -eq 3 ]; then
    case $3 in
        '' | *[!0-9]*) ;;                  # malformed: let the shim refuse it
        *) exec sh "$SHIM" flush "$2" 0 ;;
    esac
fi
exec sh "$SHIM" "$@"
