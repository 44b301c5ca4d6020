#!/bin/sh
# Mutant agent: protected_removed.
# Bug: a successful flush also deletes the PERMANENT and NOARP entries outside its scope that
# the harness did not plant (link-layer address not 02:5e:...): an operator's static entries
# (and the kernel's multicast ones, which the judge leaves to live traffic). The harness's own
# static entries are spared, so only the judge's protected-entry rule can see it. Reports SUCCESS.
# Should break: NO-COLLATERAL (and IF-ONE / FAM-INET / FAM-INET6 for the scope asked).
# Every other verb passes through to the real shim unchanged.
SHIM=$(dirname "$0")/../../harness/device/agents/linux_shim.sh
set -f  # ip output is split into words below: never glob

. "$(dirname "$0")/lib.sh"

if [ "$1" = flush ] && [ $# -eq 3 ] && scope_of "$2" "$3"; then
    out=$(sh "$SHIM" "$@")
    rc=$?
    case $out in
        '{"status": 0,'*)
            outside "$2" "$DEV" | awk '($4 == "PERMANENT" || $4 == "NOARP") && $3 !~ /^02:5e:/ {
                    print "neigh del " $1 " dev " $2
                }' | ip -force -batch - 2>/dev/null ;;
    esac
    printf '%s\n' "$out"
    exit $rc
fi
exec sh "$SHIM" "$@"
