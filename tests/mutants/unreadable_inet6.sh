#!/bin/sh
# Mutant agent: unreadable_inet6.
# Bug: the IPv6 table cannot be read (`table 23` and `table 0` answer STATUS_UNSUCCESSFUL),
# and the IPv6 flush does nothing: `flush 23` reports SUCCESS, `flush 0` flushes IPv4 only.
# A judge that took an unreadable family for an empty one would pass the IPv6 cases.
# Should end in: error (nothing can be planted in the IPv6 scopes), never a green run.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

case $1:$# in
    table:2)
        case $2 in
            0 | 23) printf '{"status": 3221225473, "entries": []}\n'; exit 0 ;;
        esac ;;
    flush:3)
        if scope_of "$2" "$3" && admin_caller; then
            case $2 in
                23) printf '{"status": 0, "status_space": "ntstatus"}\n'; exit 0 ;;
                0) exec sh "$SHIM" flush 2 "$3" ;;
            esac
        fi ;;
esac
exec sh "$SHIM" "$@"
