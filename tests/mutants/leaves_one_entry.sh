#!/bin/sh
# Mutant agent: leaves_one_entry.
# Bug: flush leaves one in-scope dynamic entry behind (one with a link-layer address, on the
# in-scope interface with the most such entries, put back with its address, link-layer
# address and state right after the real flush) and still reports SUCCESS.
# Should break: FAM-UNSPEC / FAM-INET / FAM-INET6 and IF-ALL / IF-ONE (whichever scope is asked).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    case $2 in
        0) fam= ;;
        2) fam=-4 ;;
        23) fam=-6 ;;
        *) exec sh "$SHIM" "$@" ;;
    esac
    case $3 in
        '' | *[!0-9]*) exec sh "$SHIM" "$@" ;;
        0) dev= ;;
        *) dev=$(ifname_of "$3") ;;
    esac
    # the entry to keep: on the in-scope interface with the most candidates (a seeded test
    # link rather than the management link's single neighbor), the first one ip lists there
    keep=$(entries "$fam" | awk -v dev="$dev" '
        (dev == "" || $2 == dev) && $3 != "-" && $4 ~ /^(STALE|REACHABLE|DELAY|PROBE)$/ {
            if (!($2 in n)) first[$2] = $0
            n[$2]++
        }
        END { for (d in n) if (best == "" || n[d] > n[best]) best = d; if (best != "") print first[best] }')
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            if [ -n "$keep" ]; then
                set -- $keep
                if [ "$4" = REACHABLE ]; then nud=reachable; else nud=stale; fi
                ip neigh replace to "$1" lladdr "$3" dev "$2" nud $nud
            fi ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
