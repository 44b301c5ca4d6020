#!/bin/sh
# Mutant agent: inet_flushes_inet6.
# Bug: flush with AF_INET (2) also flushes the IPv6 entries in the same interface scope.
# Should break: FAM-INET, NO-COLLATERAL.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ] && [ $# -eq 3 ] && [ "$2" = 2 ]; then
    out=$(sh "$SHIM" flush 2 "$3")
    rc=$?
    case $out in
        '{"status": 0,'*) sh "$SHIM" flush 23 "$3" >/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
