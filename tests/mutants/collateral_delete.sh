#!/bin/sh
# Mutant agent: collateral_delete.
# Bug: flush also deletes one entry outside its scope: with an InterfaceIndex, one entry of
# the requested family on another interface; with index 0 and a single family, one entry of
# the other family (dynamic before permanent, never NOARP; from the interface that has the
# most). Reports SUCCESS. With AF_UNSPEC and index 0 nothing is out of scope: no bug shows.
# Should break: NO-COLLATERAL (and IF-ONE).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

# first_victim OWN_DEV: an entry on another interface, taken from the interface with the most
# candidates (a seeded test link rather than the management link's single neighbor);
# dynamic entries first, then permanent ones; never NOARP (ip cannot flush those anyway)
first_victim() {
    awk -v dev="$1" '
        $2 != dev && $4 != "NOARP" {
            kind = ($4 == "PERMANENT") ? "p" : "d"
            if (!((kind, $2) in n)) first[kind, $2] = $0
            n[kind, $2]++; devs[$2] = 1
        }
        END {
            for (k = 1; k <= 2; k++) {
                kind = (k == 1) ? "d" : "p"; best = ""
                for (d in devs) if ((kind, d) in n && (best == "" || n[kind, d] > n[kind, best])) best = d
                if (best != "") { print first[kind, best]; exit }
            }
        }'
}

if [ "$1" = flush ] && [ $# -eq 3 ]; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            victim=
            case $2:$3 in
                *:0) case $2 in
                         2) victim=$(entries -6 | first_victim '') ;;
                         23) victim=$(entries -4 | first_victim '') ;;
                     esac ;;
                0:*) victim=$(entries '' | first_victim "$(ifname_of "$3")") ;;
                2:*) victim=$(entries -4 | first_victim "$(ifname_of "$3")") ;;
                23:*) victim=$(entries -6 | first_victim "$(ifname_of "$3")") ;;
            esac
            if [ -n "$victim" ]; then
                set -- $victim
                ip neigh del to "$1" dev "$2"
            fi ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
