#!/bin/sh
# neighcheck Linux agent shim: agent protocol v1 (DESIGN.md section 2a) over iproute2.
#
# Run as  sh -c '<this text>' neighcheck-agent VERB ARGS...   or   sh linux_shim.sh VERB ARGS...
# POSIX sh only (dash, busybox sh); needs `ip`: iproute2's, or busybox's (as on OpenWrt or
# Yocto images), which has no `neigh replace|del`: there `add` falls back to busybox `arp -s`
# (IPv4 only; an IPv6 add answers {"status": null, "error": "not-supported"}) and `delete`
# to `ip neigh flush to ADDR`. Only ip's text output is parsed (busybox ip has no -j).
# Uses awk when present (fast path, env NECK_SHIM_NO_AWK=1 forces the pure-sh path; both
# print the same JSON).
# Prints one JSON object and exits 0; a malformed argument prints
# {"error": "bad-argument", ...} and exits 2. Families use Windows numbers (0, 2, 23);
# status codes are NTSTATUS as unsigned decimal.
#
# Choices for the clauses the reference leaves open ("observed"):
# - OBS-PERMANENT: flush keeps PERMANENT and NOARP entries, as `ip neigh flush` does.
#   It removes every dynamic state: incomplete, reachable, stale, delay, probe, failed
#   (OBS-STATES), and entries still without a state (NUD_NONE, reported as incomplete).
# - OBS-BAD-INDEX: a non-zero InterfaceIndex that names no interface returns
#   STATUS_NOT_FOUND and changes nothing.
# - OBS-UNSPEC-ONE-STACK: AF_UNSPEC with one stack present flushes that stack and succeeds;
#   with no stack at all it returns STATUS_NOT_SUPPORTED.
# Order of checks in flush: family (INVALID_PARAMETER), stack (NOT_SUPPORTED), index
# (NOT_FOUND), rights (ACCESS_DENIED: no CAP_NET_ADMIN, or ip says "Operation not
# permitted"), then the flush, repeated while ip says "Flush not complete" (bounded).
# "admin" means CAP_NET_ADMIN in the effective set (uid 0 counts only through it), falling
# back to uid 0 when /proc/self/status cannot be read.

# shellcheck disable=SC2086  # unquoted expansions split ip's output and optional flags on purpose
set -f          # word splitting is used to parse ip's output: never glob
RP=             # serve mode: what a streamed reply puts first ("id": "ID", ); see serve_one
STREAMING=
NL='
'
ST_SUCCESS=0
ST_UNSUCCESSFUL=3221225473
ST_INVALID_PARAMETER=3221225485
ST_ACCESS_DENIED=3221225506
ST_NOT_SUPPORTED=3221225659
ST_NOT_FOUND=3221226021
ATTEMPTS=3      # bounded retries of a flush or dump that raced with table changes

# ---------------------------------------------------------------- JSON output

# replace_all STRING FROM TO -> R
replace_all() {
    R='' _rs=$1
    while :; do
        case $_rs in
            *"$2"*) R=$R${_rs%%"$2"*}$3; _rs=${_rs#*"$2"} ;;
            *) R=$R$_rs; return ;;
        esac
    done
}

# json_escape STRING -> ESC (backslash, quote, tab and newline escaped)
json_escape() {
    replace_all "$1" '\' '\\'
    replace_all "$R" '"' '\"'
    replace_all "$R" "$NL" '\n'
    replace_all "$R" '	' '\t'
    ESC=$R
}

bad_argument() {
    json_escape "$1"
    printf '{%s"error": "bad-argument", "detail": "%s"%s}\n' "$RP" "$ESC" "${STREAMING:+, \"exit\": 2}"
    exit 2
}

# print_status CODE [DETAIL] [EXTRA_JSON_MEMBERS]
print_status() {
    _extra=${3:+, $3}
    if [ -n "$2" ]; then
        json_escape "$2"
        printf '{"status": %s, "status_space": "ntstatus"%s, "detail": "%s"}\n' "$1" "$_extra" "$ESC"
    else
        printf '{"status": %s, "status_space": "ntstatus"%s}\n' "$1" "$_extra"
    fi
}

# ---------------------------------------------------------------- argument checks

# parse_uint VALUE MAX WHAT -> N (decimal without leading zeros), or bad-argument
parse_uint() {
    case $1 in
        '' | *[!0-9]*) bad_argument "$3 must be a decimal number, got '$1'" ;;
    esac
    N=$1
    while :; do
        case $N in
            0?*) N=${N#0} ;;
            *) break ;;
        esac
    done
    if [ ${#N} -gt 10 ] || [ "$N" -gt "$2" ]; then
        bad_argument "$3 out of range 0..$2: '$1'"
    fi
}

parse_family() { parse_uint "$1" 65535 FAMILY; FAMILY=$N; }
parse_ifindex() { parse_uint "$1" 4294967295 IFINDEX; IFINDEX=$N; }

# Addresses and link-layer addresses reach ip as words: only these characters pass.
check_chars() {
    case $1 in
        '' | *[!0-9a-fA-F:.]*) bad_argument "$2 may only contain [0-9a-fA-F:.], got '$1'" ;;
    esac
}

# need_args GOT WANT VERB USAGE
need_args() {
    [ "$1" -eq "$2" ] || bad_argument "$3 takes $2 argument(s)${4:+: $4}, got $1"
}

is_ipv4() {
    case $1 in
        *[!0-9.]* | *..* | .* | *.) return 1 ;;
    esac
    _oifs=$IFS IFS=.
    set -- $1
    IFS=$_oifs
    [ $# -eq 4 ] || return 1
    for _o; do
        case $_o in
            0?*) return 1 ;;      # ip would read a leading zero as octal
        esac
        [ ${#_o} -le 3 ] && [ "$_o" -le 255 ] || return 1
    done
}

# lladdr_groups LLADDR -> N = number of hex bytes, or 0 when malformed
lladdr_groups() {
    N=0
    case $1 in
        :* | *: | *::* | *[!0-9a-fA-F:]*) return ;;
    esac
    _oifs=$IFS IFS=:
    set -- $1
    IFS=$_oifs
    for _g; do
        [ ${#_g} -le 2 ] || { N=0; return; }
    done
    N=$#
}

# ---------------------------------------------------------------- device facts

have_inet() { [ ! -d /proc/sys/net ] || [ -d /proc/sys/net/ipv4 ]; }

have_inet6() {
    [ -e /proc/net/if_inet6 ] || return 1
    _v=0
    read -r _v 2>/dev/null </proc/sys/net/ipv6/conf/all/disable_ipv6
    [ "$_v" != 1 ]
}

is_admin() {
    _euid='' _cap=''
    if [ -r /proc/self/status ]; then
        while read -r _k _a _b _rest; do
            case $_k in
                Uid:) _euid=$_b ;;
                CapEff:) _cap=$_a ;;
            esac
        done </proc/self/status
    fi
    if [ -n "$_cap" ]; then
        _cap=000$_cap
        _cap=${_cap#"${_cap%????}"}   # CAP_NET_ADMIN is bit 12: the last four hex digits
        [ $((0x$_cap & 0x1000)) -ne 0 ]
        return
    fi
    [ "${_euid:-$(id -u 2>/dev/null)}" = 0 ]
}

# load_links: one `ip -o link show`. Sets LINKS (lines "index name mac up", mac "-" when
# none) and LINKMAP (" name=index " words, for lookups with case patterns).
load_links() {
    _out=$(ip -o link show) || return 1
    LINKS='' LINKMAP=' '
    _oifs=$IFS IFS=$NL
    for _line in $_out; do
        IFS=' '
        set -- $_line
        _idx=${1%:} _name=${2%:} _flags=${3#"<"} _mac=-
        _name=${_name%%@*}                  # "eth1@if7": the peer is not part of the name
        while [ $# -gt 0 ]; do
            case $1 in
                link/*)
                    case $2 in
                        *:*) [ "$2" = 00:00:00:00:00:00 ] || _mac=$2 ;;
                    esac
                    break ;;
            esac
            shift
        done
        case ,${_flags%">"}, in
            *,UP,*) _up=true ;;
            *) _up=false ;;
        esac
        LINKS="$LINKS$_idx $_name $_mac $_up$NL"
        LINKMAP="$LINKMAP$_name=$_idx "
    done
    IFS=$_oifs
}

# link_by_index INDEX -> LINKNAME, LINKMAC ("-" when none); fails when absent
link_by_index() {
    _oifs=$IFS IFS=$NL
    for _line in $LINKS; do
        IFS=' '
        set -- $_line
        if [ "$1" = "$WANT_INDEX" ]; then
            LINKNAME=$2 LINKMAC=$3
            IFS=$_oifs
            return 0
        fi
    done
    IFS=$_oifs
    return 1
}

# ip_failure_status MESSAGE DEFAULT -> STATUS
ip_failure_status() {
    case $1 in
        *"Operation not permitted"*) STATUS=$ST_ACCESS_DENIED ;;
        *"No such file or directory"* | *"No such device"*) STATUS=$ST_NOT_FOUND ;;
        *"is expected rather than"* | *"Invalid argument"* | *"Invalid link address"* | *"invalid hardware address"*)
            STATUS=$ST_INVALID_PARAMETER ;;
        *) STATUS=$2 ;;
    esac
}

# family_flag FAMILY -> IPFAM ("-4", "-6" or "" for both present stacks) or prints a
# status and fails (invalid family, missing stack). $2 is the printer to use.
family_flag() {
    case $1 in
        2) have_inet || { $2 $ST_NOT_SUPPORTED; return 1; }; IPFAM=-4 ;;
        23) have_inet6 || { $2 $ST_NOT_SUPPORTED; return 1; }; IPFAM=-6 ;;
        0)
            if have_inet && have_inet6; then IPFAM=
            elif have_inet; then IPFAM=-4
            elif have_inet6; then IPFAM=-6
            else $2 $ST_NOT_SUPPORTED; return 1
            fi ;;
        *) $2 $ST_INVALID_PARAMETER; return 1 ;;
    esac
}

# ---------------------------------------------------------------- verbs

verb_interfaces() {
    need_args $# 0 interfaces ''
    load_links || { print_status $ST_UNSUCCESSFUL "ip link show failed"; return; }
    # families (protocol extension): the device's stacks, less IPv6 where an interface has it
    # disabled (/proc/sys/net/ipv6/conf/<if>/disable_ipv6)
    _v4=''
    have_inet && _v4='"ipv4"'
    have_inet6 && _v6=true || _v6=false
    printf '{"interfaces": ['
    _sep=
    _oifs=$IFS IFS=$NL
    for _line in $LINKS; do
        IFS=' '
        set -- $_line
        json_escape "$2"
        if [ "$3" = - ]; then _mac=null; else _mac="\"$3\""; fi
        _fams=$_v4
        if $_v6; then
            _off=0
            read -r _off 2>/dev/null </proc/sys/net/ipv6/conf/"$2"/disable_ipv6
            [ "$_off" = 1 ] || _fams="$_fams${_fams:+, }\"ipv6\""
        fi
        printf '%s{"index": %s, "name": "%s", "mac": %s, "up": %s, "families": [%s]}' \
            "$_sep" "$1" "$ESC" "$_mac" "$4" "$_fams"
        _sep=', '
    done
    IFS=$_oifs
    printf ']}\n'
}

verb_stacks() {
    need_args $# 0 stacks ''
    if have_inet; then _v4=true; else _v4=false; fi
    if have_inet6; then _v6=true; else _v6=false; fi
    printf '{"ipv4": %s, "ipv6": %s}\n' $_v4 $_v6
}

# ip_flavour -> IPFLAVOUR: iproute2, busybox or missing (busybox ip has no -V: it prints usage)
ip_flavour() {
    case $(ip -V 2>&1) in
        *iproute2*) IPFLAVOUR=iproute2 ;;
        *BusyBox*) IPFLAVOUR=busybox ;;
        *) if command -v ip >/dev/null 2>&1; then IPFLAVOUR=unknown; else IPFLAVOUR=missing; fi ;;
    esac
}

# is_busybox_refusal MESSAGE: busybox ip does not know `neigh replace|del` (iproute2 never
# words an error this way: it says 'Command "x" is unknown')
is_busybox_refusal() {
    case $1 in
        *"invalid argument 'replace'"* | *"invalid argument 'del'"*) return 0 ;;
    esac
    return 1
}

verb_info() {
    need_args $# 0 info ''
    ip_flavour
    _kernel='' _host=''
    read -r _kernel 2>/dev/null </proc/sys/kernel/osrelease || _kernel=$(uname -r 2>/dev/null)
    read -r _host 2>/dev/null </proc/sys/kernel/hostname || _host=$(uname -n 2>/dev/null)
    if is_admin; then _admin=true; else _admin=false; fi
    json_escape "$_kernel"; _kernel=$ESC
    json_escape "$_host"
    # serve is offered when the harness runs this text as its built-in agent (`sh -c TEXT
    # neighcheck-agent`): a program that wraps the shim and passes `info` through (a vendor's
    # wrapper, the test mutants) must not claim a serve mode that would bypass it.
    _serve=
    [ "${0##*/}" != neighcheck-agent ] || _serve=', "serve": true'
    printf '{"agent": "neighcheck-linux-shim/1", "os": "linux", "kernel": "%s", "hostname": "%s", "admin": %s, "ip": "%s"%s}\n' \
        "$_kernel" "$ESC" "$_admin" "$IPFLAVOUR" "$_serve"
}

print_table_status() { printf '{%s"status": %s, "status_space": "ntstatus", "entries": []}\n' "$RP" "$1"; }

# Table lines look like
#   ADDR dev NAME [lladdr LL] [router] [proxy] [extern_learn] [protocol P] [STATE]
# with no STATE for NUD_NONE. The awk program and table_entries_sh must print byte-identical
# JSON. One `ip -o -batch` run prints the links first ("3: eth1@if7: <...> ...", for the
# names' indexes), then the neighbors: one process per read (a separate `ip link show` was a
# second one). A link line's first word is digits and a colon; no address is that.
TABLE_BATCH='link show
neigh show nud all'
# Bytes of ip output up to which the table is parsed in sh: below that an awk process costs
# more than the shell's loop (env NECK_SHIM_AWK_FROM overrides it; the tests force each path).
AWK_FROM=${NECK_SHIM_AWK_FROM:-4096}
TABLE_AWK='
BEGIN {
    split("INCOMPLETE REACHABLE STALE DELAY PROBE FAILED NOARP PERMANENT", names, " ")
    for (i in names) st[names[i]] = tolower(names[i])
    count = 0
}
$1 ~ /^[0-9]+:$/ {
    name = $2; sub(/:$/, "", name); sub(/@.*/, "", name)
    idx[name] = substr($1, 1, length($1) - 1)
    next
}
NF > 0 {
    # ip prints "dev NAME" and "lladdr LL" first: read them directly, loop over the rest
    if ($2 == "dev") { dev = $3; i = 4 } else { dev = ""; i = 2 }
    if ($i == "lladdr") { ll = "\"" tolower($(i + 1)) "\""; i += 2 } else ll = "null"
    router = "false"; state = "incomplete"
    for (; i <= NF; i++) {
        t = $i
        if (t == "router") router = "true"
        else if (t in st) state = st[t]
        else if (t == "protocol") i++
        else if (t == "dev") dev = $(++i)
        else if (t == "lladdr") ll = "\"" tolower($(++i)) "\""
    }
    out[++count] = "{\"address\": \"" $1 "\", \"family\": " (index($1, ":") ? 23 : 2) \
        ", \"ifindex\": " ((dev in idx) ? idx[dev] : 0) ", \"lladdr\": " ll \
        ", \"state\": \"" state "\", \"router\": " router "}"
}
END {
    printf "{%s\"status\": 0, \"status_space\": \"ntstatus\", \"entries\": [", ENVIRON["NECK_RP"]
    if (count) printf "%s", out[1]
    for (i = 2; i <= count; i++) printf ", %s", out[i]
    printf "]}\n"
}'

# table_from_batch_sh TEXT: the reply for `ip -o -batch` output, parsed in sh
table_from_batch_sh() {
    LINKMAP=' ' _neigh=''
    _oifs=$IFS IFS=$NL
    for _line in $1; do
        case ${_line%% *} in
            *[!0-9]*: | :) ;;
            *:)
                IFS=' '
                set -- $_line
                IFS=$NL
                _name=${2%:}
                LINKMAP="$LINKMAP${_name%%@*}=${1%:} "
                continue ;;
        esac
        _neigh=$_neigh$_line$NL
    done
    IFS=$_oifs
    printf '{%s"status": 0, "status_space": "ntstatus", "entries": [' "$RP"
    table_entries_sh "$_neigh"
    printf ']}\n'
}

table_entries_sh() {
    _sep=
    _oifs=$IFS IFS=$NL
    for _line in $1; do
        IFS=' '
        set -- $_line
        [ $# -gt 0 ] || continue
        _addr=$1 _dev='' _ll=null _router=false _state=incomplete
        shift
        while [ $# -gt 0 ]; do
            case $1 in
                dev) _dev=${2-}; [ $# -lt 2 ] || shift ;;
                lladdr)
                    _ll=\"${2-}\"; [ $# -lt 2 ] || shift
                    case $_ll in *[A-F]*) lower_hex "$_ll"; _ll=$R ;; esac ;;
                protocol) [ $# -lt 2 ] || shift ;;
                router) _router=true ;;
                INCOMPLETE) _state=incomplete ;;
                REACHABLE) _state=reachable ;;
                STALE) _state=stale ;;
                DELAY) _state=delay ;;
                PROBE) _state=probe ;;
                FAILED) _state=failed ;;
                NOARP) _state=noarp ;;
                PERMANENT) _state=permanent ;;
            esac
            shift
        done
        case $_addr in *:*) _fam=23 ;; *) _fam=2 ;; esac
        case $LINKMAP in
            *" $_dev="*) _ifx=${LINKMAP#*" $_dev="}; _ifx=${_ifx%% *} ;;
            *) _ifx=0 ;;
        esac
        printf '%s{"address": "%s", "family": %d, "ifindex": %s, "lladdr": %s, "state": "%s", "router": %s}' \
            "$_sep" "$_addr" "$_fam" "$_ifx" "$_ll" "$_state" "$_router"
        _sep=', '
    done
    IFS=$_oifs
}

# lower_hex STRING -> R (A-F lowercased; ip prints lowercase, so this is rarely needed)
lower_hex() {
    R=$1
    for _p in A:a B:b C:c D:d E:e F:f; do
        replace_all "$R" "${_p%:*}" "${_p#*:}"
    done
}

# A dump that races with table changes fails ("Dump was interrupted"): read again, bounded.
verb_table() {
    need_args $# 1 table FAMILY
    parse_family "$1"
    family_flag "$FAMILY" print_table_status || return 0
    _try=1
    while :; do
        # only stdout is parsed: a warning on stderr must not become an entry. busybox ip has
        # no -batch: there the same text comes from two runs (links first, then neighbors).
        if _out=$(ip -o $IPFAM -batch - 2>/dev/null <<EOF
$TABLE_BATCH
EOF
) || _out=$(ip -o link show && ip $IPFAM neigh show nud all); then
            if [ ${#_out} -lt "$AWK_FROM" ] || [ -n "${NECK_SHIM_NO_AWK-}" ] ||
                    ! command -v awk >/dev/null 2>&1; then
                table_from_batch_sh "$_out"
            else
                printf '%s\n' "$_out" | NECK_RP=$RP awk "$TABLE_AWK"
            fi
            return
        fi
        [ $_try -lt $ATTEMPTS ] || break
        _try=$((_try + 1))
    done
    print_table_status $ST_UNSUCCESSFUL
}

# resolve_index -> LINKNAME/LINKMAC for IFINDEX, or prints NOT_FOUND with $1 and fails
resolve_index() {
    load_links || { $1 $ST_UNSUCCESSFUL "ip link show failed"; return 1; }
    WANT_INDEX=$IFINDEX
    link_by_index || { $1 $ST_NOT_FOUND; return 1; }
}

verb_flush() {
    need_args $# 2 flush 'FAMILY IFINDEX'
    parse_family "$1"
    parse_ifindex "$2"
    family_flag "$FAMILY" print_status || return 0
    if [ "$IFINDEX" = 0 ]; then
        _scope=all
    else
        resolve_index print_status || return 0
        _scope="dev $LINKNAME"
    fi
    is_admin || { print_status $ST_ACCESS_DENIED; return; }
    clock_us; _t0=$US
    _try=1
    while :; do
        # no nud filter: ip's default flush keeps PERMANENT and NOARP (see the top)
        _msg=$(ip $IPFAM neigh flush $_scope 2>&1) && { print_timed_status "$_t0" $ST_SUCCESS; return; }
        case $_msg in
            *"Flush not complete"* | *"Flush terminated"* | *"Dump was interrupted"*)
                [ $_try -lt $ATTEMPTS ] && { _try=$((_try + 1)); continue; } ;;
        esac
        break
    done
    ip_failure_status "$_msg" $ST_UNSUCCESSFUL
    print_timed_status "$_t0" "$STATUS" "$_msg"
}

# Checks shared by add and delete: FAMILY, IFINDEX, ADDRESS -> IPFAM, LINKNAME, LINKMAC
# address_fits ADDRESS: is it an address of FAMILY (2 or 23)? Else fails, with R the reason.
address_fits() {
    case $FAMILY in
        2) is_ipv4 "$1" || { R="not an IPv4 address: $1"; return 1; } ;;
        23) case $1 in *:*) ;; *) R="not an IPv6 address: $1"; return 1 ;; esac ;;
        *) R="family must be 2 or 23"; return 1 ;;
    esac
}

# entry_scope: FAMILY's stack, IFINDEX, rights -> IPFAM, LINKNAME, LINKMAC, or prints a
# status and fails
entry_scope() {
    family_flag "$FAMILY" print_status || return 1
    [ "$IFINDEX" != 0 ] || { print_status $ST_INVALID_PARAMETER "an entry needs an interface"; return 1; }
    resolve_index print_status || return 1
    is_admin || { print_status $ST_ACCESS_DENIED; return 1; }
}

# Checks shared by add and delete: FAMILY, IFINDEX, ADDRESS -> IPFAM, LINKNAME, LINKMAC
entry_target() {
    address_fits "$1" || { print_status $ST_INVALID_PARAMETER "$R"; return 1; }
    entry_scope
}

run_entry_command() {
    # "to" makes ip read the next word as the address, never as a keyword
    run_entry_command_with ip "$@"
}

run_entry_command_with() {
    _msg=$("$@" 2>&1) && { print_status $ST_SUCCESS; return; }
    ip_failure_status "$_msg" $ST_UNSUCCESSFUL
    print_status "$STATUS" "$_msg"
}

verb_add() {
    need_args $# 4 add 'FAMILY IFINDEX ADDRESS LLADDR'
    parse_family "$1"
    parse_ifindex "$2"
    check_chars "$3" ADDRESS
    check_chars "$4" LLADDR
    _addr=$3 _ll=$4
    entry_target "$_addr" || return 0
    if ! is_ipv4 "$_ll"; then
        lladdr_groups "$_ll"
        [ "$N" -gt 0 ] || { print_status $ST_INVALID_PARAMETER "malformed link-layer address: $_ll"; return; }
        if [ "$LINKMAC" != - ]; then
            lladdr_groups "$LINKMAC"
            _want=$N
            lladdr_groups "$_ll"
            [ "$N" = "$_want" ] || { print_status $ST_INVALID_PARAMETER "link-layer address length differs from $LINKNAME's"; return; }
        fi
    fi
    _msg=$(ip $IPFAM neigh replace to "$_addr" lladdr "$_ll" dev "$LINKNAME" nud permanent 2>&1) &&
        { print_status $ST_SUCCESS; return; }
    if is_busybox_refusal "$_msg"; then
        add_busybox "$_addr" "$_ll"
        return
    fi
    ip_failure_status "$_msg" $ST_UNSUCCESSFUL
    print_status "$STATUS" "$_msg"
}

# busybox ip cannot add entries: busybox arp can (IPv4, ATF_PERM: a PERMANENT entry)
add_busybox() {
    if [ "$FAMILY" = 23 ]; then
        printf '{"status": null, "error": "not-supported", "detail": "%s"}\n' \
            "busybox ip cannot add IPv6 neighbor entries (iproute2 ip neigh replace is missing)"
        return
    fi
    if ! command -v arp >/dev/null 2>&1; then
        printf '{"status": null, "error": "not-supported", "detail": "%s"}\n' \
            "busybox ip cannot add neighbor entries and arp is missing"
        return
    fi
    run_entry_command_with arp -i "$LINKNAME" -s "$1" "$2"
}

# delete FAMILY IFINDEX ADDRESS [ADDRESS ...]: several addresses in one call (a protocol
# extension). Reply: the first status other than success or not-found (else 0; with one
# address too, as the Windows agent answers), and one result per address. `ip neigh del` stops a batch at the first entry that is not there
# (iproute2 6.1, -force or not), so the batch deletes only what the table shows; an entry that
# vanished in between fails it, and the table is read again (bounded). An address the table
# does not show is not found, unless it may be spelled other than ip prints it (IPv6 in upper
# case, with leading zeros or uncompressed zeros, dotted): then `ip neigh del` alone decides.
verb_delete() {
    [ $# -ge 3 ] || bad_argument "delete takes FAMILY IFINDEX ADDRESS [ADDRESS ...], got $# argument(s)"
    parse_family "$1"
    parse_ifindex "$2"
    shift 2
    for _a; do check_chars "$_a" ADDRESS; done
    case $FAMILY in
        2 | 23) ;;
        *) print_status $ST_INVALID_PARAMETER "family must be 2 or 23"; return ;;
    esac
    entry_scope || return 0
    RES_OK='' RES_NF='' RES_BAD='' RES_ERR='' RES_ODD='' ERR_ST='' FIRST=$ST_SUCCESS DETAIL='' _todo=''
    for _a; do
        if address_fits "$_a"; then _todo="$_todo$_a$NL"; else RES_BAD="$RES_BAD $_a"; failed $ST_INVALID_PARAMETER "$R"; fi
    done
    ip_flavour
    if [ "$IPFLAVOUR" = busybox ]; then
        # busybox ip has no -batch and no `neigh del`: flush exactly each address (a full-length
        # prefix; permanent entries too), one at a time
        for _a in $_todo; do
            if [ -z "$(ip $IPFAM neigh show to "$_a" dev "$LINKNAME" nud all 2>/dev/null)" ]; then
                RES_NF="$RES_NF $_a"
            elif _msg=$(ip $IPFAM neigh flush to "$_a" dev "$LINKNAME" nud all 2>&1); then
                RES_OK="$RES_OK $_a"
            else
                ip_failure_status "$_msg" $ST_UNSUCCESSFUL
                RES_ODD="$RES_ODD $STATUS=$_a"
                failed "$STATUS" "$_msg"
            fi
        done
        _todo=''
    fi
    replace_all "$LINKNAME" % %%
    _dev=$R   # in a printf format
    _try=1
    while [ -n "$_todo" ]; do
        classify_present "$_todo"
        if [ $_try -gt 1 ]; then
            RES_OK="$RES_OK $ABSENT"    # deleted by the batch that then failed
        else
            for _a in $ABSENT; do
                if maybe_spelled_otherwise "$_a"; then
                    _msg=$(ip $IPFAM neigh del to "$_a" dev "$LINKNAME" 2>&1) && _st=$ST_SUCCESS ||
                        { ip_failure_status "$_msg" $ST_UNSUCCESSFUL; _st=$STATUS; }
                    RES_ODD="$RES_ODD $_st=$_a"
                    failed "$_st" "$_msg"
                else
                    RES_NF="$RES_NF $_a"
                fi
            done
        fi
        [ -n "$PRESENT" ] || break
        if _msg=$(printf "neigh del to %s dev $_dev\n" $PRESENT | ip $IPFAM -batch - 2>&1); then
            RES_OK="$RES_OK $PRESENT"
            break
        fi
        ip_failure_status "$_msg" $ST_UNSUCCESSFUL
        if [ $_try -ge $ATTEMPTS ] || [ "$STATUS" != $ST_NOT_FOUND ]; then
            # not a race with the table: what is still there failed with ip's error
            classify_present "$PRESENT"
            RES_OK="$RES_OK $ABSENT" RES_ERR=$PRESENT ERR_ST=$STATUS
            failed "$STATUS" "$_msg"
            break
        fi
        _todo=$PRESENT _try=$((_try + 1))
    done
    _detail=''
    if [ -n "$DETAIL" ]; then
        json_escape "$DETAIL"
        _detail=", \"detail\": \"$ESC\""
    fi
    printf '{"status": %s, "status_space": "ntstatus"%s, "results": [' "$FIRST" "$_detail"
    _sep=''
    print_results $ST_SUCCESS $RES_OK
    print_results $ST_NOT_FOUND $RES_NF
    print_results $ST_INVALID_PARAMETER $RES_BAD
    print_results "$ERR_ST" $RES_ERR
    for _r in $RES_ODD; do print_results "${_r%%=*}" "${_r#*=}"; done
    printf ']}\n'
}

# failed STATUS DETAIL: the reply's status is the first one other than success or not-found
failed() {
    if [ "$1" != $ST_SUCCESS ] && [ "$1" != $ST_NOT_FOUND ] && [ "$FIRST" = $ST_SUCCESS ]; then
        FIRST=$1 DETAIL=$2
    fi
}

# print_results STATUS ADDRESS...: their results, one printf for all (no per-address loop)
print_results() {
    [ $# -gt 1 ] || return 0
    _st=$1
    shift
    printf "$_sep{\"address\": \"%s\", \"status\": $_st}" "$1"
    shift
    [ $# -eq 0 ] || printf ", {\"address\": \"%s\", \"status\": $_st}" "$@"
    _sep=', '
}

# classify_present ADDRESSES -> PRESENT, ABSENT (in ADDRESSES' order): which of them the
# table shows on LINKNAME (the address is the first word of each `ip neigh show` line)
classify_present() {
    if [ -z "${NECK_SHIM_NO_AWK-}" ] && command -v awk >/dev/null 2>&1; then
        _out=$({ ip $IPFAM neigh show dev "$LINKNAME" nud all 2>/dev/null; echo '!want'
                 printf '%s' "$1"; } | awk '
            $1 == "!want" { want = 1; next }
            !want { if (NF) have[$1] = 1; next }
            NF { if ($1 in have) p = p $1 "\n"; else a = a $1 "\n" }
            END { printf "%s!absent\n%s", p, a }')
        PRESENT=${_out%%!absent*} ABSENT=${_out#*!absent}
        return
    fi
    _table=$(ip $IPFAM neigh show dev "$LINKNAME" nud all 2>/dev/null) || _table=''
    _have=$NL
    _oifs=$IFS IFS=$NL
    for _line in $_table; do _have="$_have${_line%% *}$NL"; done
    PRESENT='' ABSENT=''
    for _a in $1; do
        case $_have in
            *"$NL$_a$NL"*) PRESENT="$PRESENT$_a$NL" ;;
            *) ABSENT="$ABSENT$_a$NL" ;;
        esac
    done
    IFS=$_oifs
}

# maybe_spelled_otherwise ADDRESS: could ip print this address differently (or refuse it)?
# True unless it is IPv4 (is_ipv4 passed it) or IPv6 in RFC 5952's form, as ip prints it.
maybe_spelled_otherwise() {
    case $1 in
        *:*) ;;
        *) return 1 ;;
    esac
    case $1 in
        *[A-F.]* | :[!:]* | *[!:]: | *:::* | *::*::*) return 0 ;;
        0[0-9a-f]* | *:0[0-9a-f]* | 0:0:* | *:0:0:* | *:0:0) return 0 ;;  # leading or uncompressed zeros
        0::* | *:0::* | *::0:* | *::0) return 0 ;;                        # a zero group beside "::"
    esac
    _oifs=$IFS IFS=:
    set -- $1
    IFS=$_oifs
    _n=0
    for _g; do
        [ ${#_g} -le 4 ] || return 0
        [ -z "$_g" ] || _n=$((_n + 1))
    done
    case $* in
        *'  '* | ' '* | *' ') [ $_n -le 6 ] && return 1 ;;   # "::" for two groups or more
        *) [ $_n -eq 8 ] && return 1 ;;
    esac
    return 0
}

# ---------------------------------------------------------------- device-side timing

# clock_us [SOURCE] -> US: a microsecond clock reading ("" when there is none) and CLOCK, its
# source; pass the first reading's CLOCK to the second so both come from one clock.
# /proc/timer_list's "now at N nsecs" line is the kernel's monotonic clock, read without a
# fork (root only; containers may mask it); `date +%s%N` forks, and on a loaded host that
# fork costs milliseconds that would land inside the measurement.
clock_us() {
    US=
    if [ "${1:-timer}" = timer ] && { read -r _ && read -r _ && read -r _ _ _ns _; } 2>/dev/null </proc/timer_list; then
        CLOCK=timer
    elif [ "${1:-date}" = date ]; then
        _ns=$(date +%s%N 2>/dev/null) CLOCK=date
    else
        return
    fi
    case $_ns in
        '' | *[!0-9]*) CLOCK=none ;;   # e.g. a date without %N
        *) US=${_ns%???} ;;
    esac
}

# print_timed_status T0 CODE [DETAIL]: print_status with "elapsed_us" since T0 (clock_us)
print_timed_status() {
    _t0=$1
    shift
    if [ -n "$_t0" ] && clock_us "$CLOCK" && [ -n "$US" ]; then
        print_status "$1" "${2-}" "\"elapsed_us\": $((US - _t0))"
    else
        print_status "$@"
    fi
}

# ---------------------------------------------------------------- serve (protocol extension)

# serve: requests on stdin, one per line, "[@ID ]VERB ARGS..."; one JSON object per line on
# stdout for each, with "id": "ID" when the request had one and "exit": N where a run of
# its own would have exited N (a bad argument: 2); until EOF. The shim is parsed once per
# session. Each request runs in a command substitution: a bad argument's `exit` ends only
# that request, no variable leaks into the next one, and every byte the verb or its ip and
# awk children print is collected before the reply line is written (one write per reply).
# stdin is the request stream: no verb may read it, so verbs get /dev/null.
verb_serve() {
    need_args $# 0 serve ''
    while IFS= read -r _line || [ -n "$_line" ]; do
        serve_one "$_line"
    done
}

serve_one() {
    _req=$1 _id=
    case $_req in
        @*) _id=${_req%%[ 	]*} _req=${_req#"$_id"} _id=${_id#@} ;;
    esac
    case $_id in
        *[!A-Za-z0-9_.-]*)
            json_escape "$_id"
            printf '{"error": "bad-argument", "detail": "a request id may only contain [A-Za-z0-9_.-], got %s", "exit": 2}\n' "$ESC"
            return ;;
    esac
    set -- $_req
    if [ $# -eq 0 ] && [ -z "$_id" ]; then
        return   # a blank line is no request
    fi
    if [ "$1" = table ]; then
        # The one verb whose reply can be megabytes (8 MB at 65k entries, where collecting it
        # first cost more than the dump): written as it is made, its printers putting in the
        # id (RP) and, for a bad argument, the exit (STREAMING).
        ( RP=${_id:+"\"id\": \"$_id\", "} STREAMING=1 SERVING=1; dispatch "$@" ) </dev/null
        return
    fi
    _out=$(SERVING=1 dispatch "$@" </dev/null)
    _rc=$?
    case $_out in
        '{'*'}') ;;
        *)
            json_escape "$_out"
            _out="{\"error\": \"no-reply\", \"detail\": \"the verb printed no JSON object: $ESC\"}"
            [ $_rc -ne 0 ] || _rc=1 ;;
    esac
    _pre=${_id:+"\"id\": \"$_id\", "}
    [ $_rc -eq 0 ] || _pre="$_pre\"exit\": $_rc, "
    if [ -z "$_pre" ]; then
        printf '%s\n' "$_out"
    elif [ "$_out" = '{}' ]; then
        printf '{%s}\n' "${_pre%, }"
    else
        printf '{%s%s\n' "$_pre" "${_out#\{}"
    fi
}

# ping: the no-op verb of serve mode (a round trip and nothing else)
verb_ping() {
    need_args $# 0 ping ''
    printf '{"pong": true}\n'
}

# ---------------------------------------------------------------- dispatch

dispatch() {
    [ $# -ge 1 ] || bad_argument "no verb given"
    _verb=$1
    case $_verb in
        interfaces | stacks | info | table | flush | add | delete | ping) ;;
        serve) [ -z "${SERVING-}" ] || bad_argument "serve cannot be asked for inside serve" ;;
        *) bad_argument "unknown verb '$_verb'" ;;
    esac
    shift
    case $_verb in
        interfaces) verb_interfaces "$@" ;;
        stacks) verb_stacks "$@" ;;
        info) verb_info "$@" ;;
        table) verb_table "$@" ;;
        flush) verb_flush "$@" ;;
        add) verb_add "$@" ;;
        delete) verb_delete "$@" ;;
        ping) verb_ping "$@" ;;
        serve) verb_serve "$@" ;;
    esac
}

dispatch "$@"
exit 0
