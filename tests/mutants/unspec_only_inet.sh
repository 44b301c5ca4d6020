#!/bin/sh
# Mutant agent: unspec_only_inet.
# Bug: flush with AF_UNSPEC (0) flushes only the IPv4 entries.
# Should break: FAM-UNSPEC (IPv6 entries in scope stay behind).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ] && [ $# -eq 3 ] && [ "$2" = 0 ]; then
    exec sh "$SHIM" flush 2 "$3"
fi
exec sh "$SHIM" "$@"
