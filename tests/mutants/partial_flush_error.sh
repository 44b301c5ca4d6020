#!/bin/sh
# Mutant agent: partial_flush_error.
# Bug: flush deletes about half of the in-scope dynamic entries (the first ceil(n/2) that ip
# lists), then reports STATUS_UNSUCCESSFUL (0xC0000001).
# Should break: NOCHANGE-ON-ERROR (a failed call changed the table) and RET-SUCCESS.
# Calls the shim refuses (bad family, missing stack, missing index) pass through unchanged,
# as does every other verb.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    stacks=$(sh "$SHIM" stacks)
    case $2 in
        0) fam= ;;
        2) fam=-4; case $stacks in *'"ipv4": true'*) ;; *) exec sh "$SHIM" "$@" ;; esac ;;
        23) fam=-6; case $stacks in *'"ipv6": true'*) ;; *) exec sh "$SHIM" "$@" ;; esac ;;
        *) exec sh "$SHIM" "$@" ;;
    esac
    case $3 in
        '' | *[!0-9]*) exec sh "$SHIM" "$@" ;;
        0) dev= ;;
        *) dev=$(ifname_of "$3"); [ -n "$dev" ] || exec sh "$SHIM" "$@" ;;
    esac
    entries "$fam" |
        awk -v dev="$dev" '(dev == "" || $2 == dev) && $4 != "PERMANENT" && $4 != "NOARP" { v[++n] = $1 " " $2 }
            END { for (i = 1; i <= (n + 1) / 2; i++) print v[i] }' |
        while read -r addr d; do
            ip neigh del to "$addr" dev "$d"
        done
    printf '{"status": 3221225473, "status_space": "ntstatus"}\n'
    exit 0
fi
exec sh "$SHIM" "$@"
