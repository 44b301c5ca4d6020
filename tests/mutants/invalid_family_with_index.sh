#!/bin/sh
# Mutant agent: invalid_family_with_index.
# Bug: an invalid family is refused (STATUS_INVALID_PARAMETER) only with InterfaceIndex 0;
# with an interface's index it is taken as AF_UNSPEC: that interface is flushed, SUCCESS.
# Should break: RET-INVALID-FAMILY, NOCHANGE-ON-ERROR (test_invalid_family with a link's index).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    case $2:$3 in
        0:* | 2:* | 23:* | *:0 | *:*[!0-9]* | *:) ;;
        *) case $2 in *[!0-9]* | '') ;; *) exec sh "$SHIM" flush 0 "$3" ;; esac ;;
    esac
fi
exec sh "$SHIM" "$@"
