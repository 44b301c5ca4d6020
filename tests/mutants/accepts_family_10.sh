#!/bin/sh
# Mutant agent: accepts_family_10.
# Bug: flush takes family 10 (Linux's AF_INET6 number) as IPv6 instead of refusing it,
# the mistake of a shim that passes Linux numbers through.
# Should break: RET-INVALID-FAMILY, NOCHANGE-ON-ERROR (IPv6 entries are flushed).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
if [ "$1" = flush ] && [ $# -eq 3 ] && [ "$2" = 10 ]; then
    exec sh "$SHIM" flush 23 "$3"
fi
exec sh "$SHIM" "$@"
