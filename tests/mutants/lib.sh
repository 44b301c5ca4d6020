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
