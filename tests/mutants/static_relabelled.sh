#!/bin/sh
# Mutant agent: static_relabelled.
# Bug: a successful flush gives the static (PERMANENT) entries outside its scope another
# link-layer address (its last byte becomes ee). They stay PERMANENT. Reports SUCCESS.
# Should break: NO-COLLATERAL.
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            outside "$2" "$DEV" | awk '$4 == "PERMANENT" && $3 != "-" {
                    ll = $3; sub(/..$/, (ll ~ /ee$/) ? "ef" : "ee", ll)
                    print "neigh replace " $1 " lladdr " ll " dev " $2 " nud permanent"
                }' | ip -force -batch - 2>/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
