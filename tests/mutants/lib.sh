# Helpers shared by the mutants that pick entries from the live table (sourced, not run).

# entries IP_FAMILY_FLAG -> lines "ADDR DEV LLADDR STATE" ("-" when absent)
entries() {
    ip $1 neigh show nud all | awk '{
        dev = "-"; ll = "-"; st = "-"
        for (i = 2; i <= NF; i++) {
            if ($i == "dev") dev = $(++i)
            else if ($i == "lladdr") ll = $(++i)
            else if ($i ~ /^[A-Z]+$/) st = $i
        }
        print $1, dev, ll, st
    }'
}

# ifname_of IFINDEX -> the interface's name
ifname_of() {
    ip -o link show | awk -v want="$1" '$1 == want ":" { n = $2; sub(/:$/, "", n); sub(/@.*/, "", n); print n }'
}

# scope_of FAMILY IFINDEX -> FAM (ip's family flag: "", -4 or -6) and DEV (the interface's
# name, "" for every interface); fails for what the shim refuses (an invalid family, a malformed
# or missing index), which the mutants pass through to it unchanged
scope_of() {
    case $1 in
        0) FAM= ;;
        2) FAM=-4 ;;
        23) FAM=-6 ;;
        *) return 1 ;;
    esac
    case $2 in
        '' | *[!0-9]*) return 1 ;;
        0) DEV= ;;
        *) DEV=$(ifname_of "$2"); [ -n "$DEV" ] || return 1 ;;
    esac
}

# outside FAMILY DEV -> the `entries` lines (both families) outside the scope (FAMILY 0, 2 or 23;
# DEV "" for every interface)
outside() {
    entries '' | awk -v fam="$1" -v dev="$2" '{
        f = index($1, ":") ? 23 : 2
        if (!((fam == 0 || fam == f) && (dev == "" || $2 == dev))) print
    }'
}

# in_background COMMANDS...: run them after the reply, as a daemon would. Stdio closed, so the
# SSH channel ends with the reply (else the harness waits for the child and the bug is hidden).
# NCK_MUTANT_DELAY (seconds, default 0.2) lets a direct test widen the window it looks in.
in_background() {
    ( sleep "${NCK_MUTANT_DELAY:-0.2}"; "$@" ) </dev/null >/dev/null 2>&1 &
}

# The harness's own entries (tests/mutants only; harness/traffic/seeding.py): seeded entries
# have link-layer addresses 02:5e:SS:.., its static entries 02:5e:ff:...
is_seeded_lladdr() { case $1 in 02:5e:ff:*) return 1 ;; 02:5e:*) return 0 ;; *) return 1 ;; esac; }

# admin_caller: the shim would flush for this caller (`info` says admin)
admin_caller() {
    case $(sh "$SHIM" info) in
        *'"admin": true'*) return 0 ;;
    esac
    return 1
}
