#!/bin/sh
# Mutant agent: seeded_failed.
# Bug: a successful flush moves the dynamic entries outside its scope to FAILED instead of
# deleting nothing: they stay in the table, unusable. Only the harness's seeded entries are hit
# (link-layer address 02:5e:..., not its statics' 02:5e:ff:...), so the SSH peer's entry on the
# management link is left alone. Reports SUCCESS.
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
            outside "$2" "$DEV" | awk '$3 ~ /^02:5e:/ && $3 !~ /^02:5e:ff:/ && $4 ~ /^(STALE|REACHABLE|DELAY|PROBE)$/ {
                    print "neigh change " $1 " dev " $2 " nud failed"
                }' | ip -force -batch - 2>/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
