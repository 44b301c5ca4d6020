/*
 * neighcheck Windows agent: the device side of the agent protocol (DESIGN.md section 2a)
 * on iphlpapi.
 *
 *   neighcheck_agent.exe interfaces | stacks | info | --version
 *   neighcheck_agent.exe table FAMILY
 *   neighcheck_agent.exe flush FAMILY IFINDEX
 *   neighcheck_agent.exe add FAMILY IFINDEX ADDRESS LLADDR      (alias: add-static)
 *   neighcheck_agent.exe delete FAMILY IFINDEX ADDRESS
 *
 * Exactly one JSON object goes to stdout; exit 0, or 2 for a bad argument.
 * Families are Windows numbers (AF_UNSPEC=0, AF_INET=2, AF_INET6=23) parsed as unsigned
 * 16-bit values and passed to the API unchanged, so invalid-family cases reach the API.
 * Status codes are the raw Win32 codes the functions return.
 *
 * Every NETIOAPI function is resolved with GetProcAddress: an implementation that lacks an
 * export (Wine has no FlushIpNetTable2) is reported as "not-exported" instead of the loader
 * refusing to start the program. An export that is only a stub (Wine raises
 * EXCEPTION_WINE_STUB when one is called) is reported the same way by the unhandled-exception
 * filter; every verb calls its API functions before it prints anything, so that report is
 * the only output.
 *
 * Output is pure ASCII: every non-ASCII character is written as a \uXXXX escape, so the
 * console code page never matters.
 *
 * Build: x86_64-w64-mingw32-gcc -municode (see build.py).
 */
#define WIN32_LEAN_AND_MEAN
#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0600
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <iphlpapi.h>
#include <netioapi.h>
#include <fcntl.h>
#include <io.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define AGENT_NAME "neighcheck-windows-agent"
#define AGENT_VERSION "1.0.0"
#define PROTOCOL_VERSION 1

#define EXIT_BAD_ARGUMENT 2
#define EXIT_CRASH 1
/* What Wine raises when a program calls an export that is declared but not implemented. */
#define EXCEPTION_WINE_STUB 0x80000100

/* Which DLL function is being called, for the exception filter's report. */
static const char *g_calling = "(none)";
/* Set once the reply is written and flushed: only FreeMibTable runs after that. */
static BOOL g_reply_complete;

/* Test hook: a build can resolve another export in place of FlushIpNetTable2 (e.g. a Wine
   stub, to check that a stub is reported and not a crash). Production builds never set it. */
#ifndef FLUSH_EXPORT
#define FLUSH_EXPORT "FlushIpNetTable2"
#endif

typedef DWORD(WINAPI *GetIpNetTable2Fn)(ADDRESS_FAMILY, PMIB_IPNET_TABLE2 *);
typedef DWORD(WINAPI *FlushIpNetTable2Fn)(ADDRESS_FAMILY, NET_IFINDEX);
typedef DWORD(WINAPI *IpNetEntry2Fn)(const MIB_IPNET_ROW2 *);
typedef DWORD(WINAPI *GetIfTable2Fn)(PMIB_IF_TABLE2 *);
typedef DWORD(WINAPI *GetIpInterfaceTableFn)(ADDRESS_FAMILY, PMIB_IPINTERFACE_TABLE *);
typedef VOID(WINAPI *FreeMibTableFn)(PVOID);
typedef LONG(WINAPI *RtlGetVersionFn)(PRTL_OSVERSIONINFOW);
typedef const char *(CDECL *WineGetVersionFn)(void);

/* ---- JSON output ------------------------------------------------------------------- */

static void json_char(unsigned int c)
{
    switch (c) {
    case '"': fputs("\\\"", stdout); return;
    case '\\': fputs("\\\\", stdout); return;
    case '\b': fputs("\\b", stdout); return;
    case '\f': fputs("\\f", stdout); return;
    case '\n': fputs("\\n", stdout); return;
    case '\r': fputs("\\r", stdout); return;
    case '\t': fputs("\\t", stdout); return;
    }
    if (c < 0x20 || c > 0x7e)
        printf("\\u%04x", c & 0xffff);
    else
        putchar((int)c);
}

/* A UTF-16 string as a JSON string literal (surrogate pairs become two escapes: valid JSON). */
static void json_wstr(const wchar_t *s)
{
    putchar('"');
    for (; *s; s++)
        json_char((unsigned int)*s);
    putchar('"');
}

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++)
        json_char((unsigned char)*s);
    putchar('"');
}

static void json_bool(BOOL b) { fputs(b ? "true" : "false", stdout); }

/* A link-layer address as "aa:bb:..", or null when there is none (incomplete entries). */
static void json_lladdr(const UCHAR *addr, ULONG len)
{
    if (len == 0) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (ULONG i = 0; i < len; i++)
        printf(i ? ":%02x" : "%02x", addr[i]);
    putchar('"');
}

/* The one error object for a bad command line; exit 2 as the protocol asks. */
static int bad_argument(const wchar_t *fmt, ...)
{
    wchar_t detail[512];
    va_list ap;
    va_start(ap, fmt);
    _vsnwprintf(detail, sizeof detail / sizeof detail[0] - 1, fmt, ap);
    va_end(ap);
    detail[sizeof detail / sizeof detail[0] - 1] = L'\0';
    fputs("{\"error\": \"bad-argument\", \"detail\": ", stdout);
    json_wstr(detail);
    fputs(", \"usage\": \"interfaces | stacks | info | table FAMILY | flush FAMILY IFINDEX"
          " | add FAMILY IFINDEX ADDRESS LLADDR | delete FAMILY IFINDEX ADDRESS"
          " | --version\"}\n", stdout);
    return EXIT_BAD_ARGUMENT;
}

static int not_exported(const char *dll, const char *function)
{
    printf("{\"status\": null, \"error\": \"not-exported\", \"detail\": \"%s has no %s\"}\n",
           dll, function);
    return 0;
}

/* ---- argument parsing -------------------------------------------------------------- */

/* Decimal or 0x-hex, no sign, no octal, within [0, max]. */
static BOOL parse_unsigned(const wchar_t *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long value = 0;
    int base = 10;
    if (s[0] == L'0' && (s[1] == L'x' || s[1] == L'X')) {
        base = 16;
        s += 2;
    }
    if (*s == L'\0')
        return FALSE;
    for (; *s; s++) {
        int digit;
        if (*s >= L'0' && *s <= L'9')
            digit = *s - L'0';
        else if (base == 16 && *s >= L'a' && *s <= L'f')
            digit = *s - L'a' + 10;
        else if (base == 16 && *s >= L'A' && *s <= L'F')
            digit = *s - L'A' + 10;
        else
            return FALSE;
        value = value * base + digit;
        if (value > max)
            return FALSE;
    }
    *out = value;
    return TRUE;
}

static BOOL parse_family(const wchar_t *s, ADDRESS_FAMILY *family)
{
    unsigned long long v;
    if (!parse_unsigned(s, 0xFFFF, &v))
        return FALSE;
    *family = (ADDRESS_FAMILY)v;
    return TRUE;
}

static BOOL parse_ifindex(const wchar_t *s, NET_IFINDEX *ifindex)
{
    unsigned long long v;
    if (!parse_unsigned(s, 0xFFFFFFFFull, &v))
        return FALSE;
    *ifindex = (NET_IFINDEX)v;
    return TRUE;
}

/* An IPv4 or IPv6 literal into a SOCKADDR_INET (family set from the literal's own kind). */
static BOOL parse_address(const wchar_t *s, SOCKADDR_INET *addr)
{
    memset(addr, 0, sizeof *addr);
    if (InetPtonW(AF_INET, s, &addr->Ipv4.sin_addr) == 1) {
        addr->si_family = AF_INET;
        return TRUE;
    }
    if (InetPtonW(AF_INET6, s, &addr->Ipv6.sin6_addr) == 1) {
        addr->si_family = AF_INET6;
        return TRUE;
    }
    return FALSE;
}

/* "02:00:5e:00:00:01" or "02-00-5e-00-00-01", 1 to IF_MAX_PHYS_ADDRESS_LENGTH bytes. */
static BOOL parse_lladdr(const wchar_t *s, UCHAR *out, ULONG *len)
{
    ULONG n = 0;
    while (*s) {
        int hi, lo;
        if (n == IF_MAX_PHYS_ADDRESS_LENGTH)
            return FALSE;
        hi = iswxdigit(s[0]) ? (int)s[0] : -1;
        lo = (hi >= 0 && iswxdigit(s[1])) ? (int)s[1] : -1;
        if (lo < 0)
            return FALSE;
        hi = iswdigit(hi) ? hi - L'0' : towlower(hi) - L'a' + 10;
        lo = iswdigit(lo) ? lo - L'0' : towlower(lo) - L'a' + 10;
        out[n++] = (UCHAR)(hi << 4 | lo);
        s += 2;
        if (*s == L':' || *s == L'-') {
            s++;
            if (*s == L'\0')
                return FALSE;
        } else if (*s != L'\0') {
            return FALSE;
        }
    }
    *len = n;
    return n > 0;
}

/* ---- iphlpapi access --------------------------------------------------------------- */

static void reply_complete(void)
{
    fflush(stdout);
    g_reply_complete = TRUE;
}

static HMODULE iphlpapi(void)
{
    static HMODULE module;
    if (!module)
        module = LoadLibraryW(L"iphlpapi.dll");
    return module;
}

static FARPROC iphlpapi_export(const char *name)
{
    HMODULE module = iphlpapi();
    g_calling = name;
    return module ? GetProcAddress(module, name) : NULL;
}

/* Frees a table after the reply is out; a fault in here must not append a second object. */
static void free_mib_table(void *table)
{
    FreeMibTableFn free_fn = (FreeMibTableFn)(void *)iphlpapi_export("FreeMibTable");
    if (free_fn && table)
        free_fn(table);
}

/* ---- verbs ------------------------------------------------------------------------- */

static int verb_interfaces(void)
{
    GetIfTable2Fn get_if_table = (GetIfTable2Fn)(void *)iphlpapi_export("GetIfTable2");
    PMIB_IF_TABLE2 table = NULL;
    DWORD status;
    BOOL first = TRUE;

    if (!get_if_table)
        return not_exported("iphlpapi.dll", "GetIfTable2");
    status = get_if_table(&table);
    if (status != NO_ERROR) {
        printf("{\"status\": %lu, \"interfaces\": []}\n", (unsigned long)status);
        return 0;
    }
    fputs("{\"status\": 0, \"interfaces\": [", stdout);
    for (ULONG i = 0; i < table->NumEntries; i++) {
        const MIB_IF_ROW2 *row = &table->Table[i];
        /* NDIS filter modules (QoS, WFP, ...) show up as extra rows for the same adapter
           on Windows; they carry no neighbor entries of their own. */
        if (row->InterfaceAndOperStatusFlags.FilterInterface)
            continue;
        fputs(first ? "" : ", ", stdout);
        first = FALSE;
        printf("{\"index\": %lu, \"name\": ", (unsigned long)row->InterfaceIndex);
        json_wstr(row->Alias);
        fputs(", \"description\": ", stdout);
        json_wstr(row->Description);
        fputs(", \"mac\": ", stdout);
        json_lladdr(row->PhysicalAddress, row->PhysicalAddressLength);
        fputs(", \"up\": ", stdout);
        json_bool(row->OperStatus == IfOperStatusUp);
        printf(", \"type\": %lu}", (unsigned long)row->Type);
    }
    fputs("]}\n", stdout);
    reply_complete();
    free_mib_table(table);
    return 0;
}

/* How many IP interfaces the stack reports for a family, or -1 if it cannot tell. */
static long ip_interface_count(ADDRESS_FAMILY family)
{
    GetIpInterfaceTableFn get_table =
        (GetIpInterfaceTableFn)(void *)iphlpapi_export("GetIpInterfaceTable");
    PMIB_IPINTERFACE_TABLE table = NULL;
    long count;
    if (!get_table || get_table(family, &table) != NO_ERROR)
        return -1;
    count = (long)table->NumEntries;
    free_mib_table(table);
    return count;
}

/* A stack is present when the transport accepts a socket of its family: that is what
   "no IPv4/IPv6 stack is located on the local device" means for the flush contract. */
static BOOL stack_present(int family)
{
    SOCKET s = socket(family, SOCK_DGRAM, IPPROTO_UDP);
    if (s == INVALID_SOCKET)
        return FALSE;
    closesocket(s);
    return TRUE;
}

static void json_count(long count)
{
    if (count < 0)
        fputs("null", stdout);
    else
        printf("%ld", count);
}

static int verb_stacks(void)
{
    BOOL ipv4 = stack_present(AF_INET), ipv6 = stack_present(AF_INET6);
    long ipv4_interfaces = ip_interface_count(AF_INET);
    long ipv6_interfaces = ip_interface_count(AF_INET6);
    fputs("{\"ipv4\": ", stdout);
    json_bool(ipv4);
    fputs(", \"ipv6\": ", stdout);
    json_bool(ipv6);
    /* Extension: GetIpInterfaceTable's interface counts, a second opinion on each stack
       (null when it fails: Wine 8 answers ERROR_NOT_SUPPORTED). */
    fputs(", \"ip_interfaces\": {\"ipv4\": ", stdout);
    json_count(ipv4_interfaces);
    fputs(", \"ipv6\": ", stdout);
    json_count(ipv6_interfaces);
    fputs("}}\n", stdout);
    return 0;
}

static const char *state_name(NL_NEIGHBOR_STATE state)
{
    switch (state) {
    case NlnsUnreachable: return "unreachable";
    case NlnsIncomplete: return "incomplete";
    case NlnsProbe: return "probe";
    case NlnsDelay: return "delay";
    case NlnsStale: return "stale";
    case NlnsReachable: return "reachable";
    case NlnsPermanent: return "permanent";
    default: return NULL;
    }
}

static void json_address(const SOCKADDR_INET *addr)
{
    char text[INET6_ADDRSTRLEN] = "";
    if (addr->si_family == AF_INET)
        inet_ntop(AF_INET, &addr->Ipv4.sin_addr, text, sizeof text);
    else if (addr->si_family == AF_INET6)
        inet_ntop(AF_INET6, &addr->Ipv6.sin6_addr, text, sizeof text);
    json_str(text);
}

static int verb_table(ADDRESS_FAMILY family)
{
    GetIpNetTable2Fn get_table = (GetIpNetTable2Fn)(void *)iphlpapi_export("GetIpNetTable2");
    PMIB_IPNET_TABLE2 table = NULL;
    DWORD status;

    if (!get_table)
        return not_exported("iphlpapi.dll", "GetIpNetTable2");
    status = get_table(family, &table);
    printf("{\"status\": %lu, \"entries\": [", (unsigned long)status);
    for (ULONG i = 0; status == NO_ERROR && table && i < table->NumEntries; i++) {
        const MIB_IPNET_ROW2 *row = &table->Table[i];
        const char *state = state_name(row->State);
        fputs(i ? ", " : "", stdout);
        fputs("{\"address\": ", stdout);
        json_address(&row->Address);
        printf(", \"family\": %u, \"ifindex\": %lu, \"lladdr\": ",
               (unsigned)row->Address.si_family, (unsigned long)row->InterfaceIndex);
        json_lladdr(row->PhysicalAddress, row->PhysicalAddressLength);
        fputs(", \"state\": ", stdout);
        if (state)
            json_str(state);
        else
            printf("\"unknown\", \"state_raw\": %d", (int)row->State);
        fputs(", \"router\": ", stdout);
        json_bool(row->IsRouter);
        fputs("}", stdout);
    }
    fputs("]}\n", stdout);
    reply_complete();
    if (status == NO_ERROR)
        free_mib_table(table);
    return 0;
}

static int verb_flush(ADDRESS_FAMILY family, NET_IFINDEX ifindex)
{
    FlushIpNetTable2Fn flush = (FlushIpNetTable2Fn)(void *)iphlpapi_export(FLUSH_EXPORT);
    DWORD status;
    if (!flush)
        return not_exported("iphlpapi.dll", FLUSH_EXPORT);
    status = flush(family, ifindex);
    printf("{\"status\": %lu, \"status_space\": \"win32\"}\n", (unsigned long)status);
    return 0;
}

/* add and delete share the row: ADDRESS's own kind picks the sockaddr layout, FAMILY is
   written into si_family unchanged (pass-through, like flush). */
static int verb_add_or_delete(BOOL add, ADDRESS_FAMILY family, NET_IFINDEX ifindex,
                              const wchar_t *address, const wchar_t *lladdr)
{
    const char *function = add ? "CreateIpNetEntry2" : "DeleteIpNetEntry2";
    IpNetEntry2Fn call = (IpNetEntry2Fn)(void *)iphlpapi_export(function);
    MIB_IPNET_ROW2 row;
    DWORD status;

    memset(&row, 0, sizeof row);
    if (!parse_address(address, &row.Address))
        return bad_argument(L"not an IPv4 or IPv6 address: %ls", address);
    if (add && !parse_lladdr(lladdr, row.PhysicalAddress, &row.PhysicalAddressLength))
        return bad_argument(L"not a link-layer address (hex bytes joined by ':'): %ls", lladdr);
    if (!call)
        return not_exported("iphlpapi.dll", function);
    row.Address.si_family = family;
    row.InterfaceIndex = ifindex;
    row.State = NlnsPermanent; /* a static entry */
    status = call(&row);
    printf("{\"status\": %lu}\n", (unsigned long)status);
    return 0;
}

/* The real OS version: GetVersionEx lies to programs without a compatibility manifest. */
static void json_os_build(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    RtlGetVersionFn rtl_get_version =
        ntdll ? (RtlGetVersionFn)(void *)GetProcAddress(ntdll, "RtlGetVersion") : NULL;
    RTL_OSVERSIONINFOW version;
    memset(&version, 0, sizeof version);
    version.dwOSVersionInfoSize = sizeof version;
    if (!rtl_get_version || rtl_get_version(&version) != 0) {
        fputs("null", stdout);
        return;
    }
    printf("\"%lu.%lu.%lu\"", (unsigned long)version.dwMajorVersion,
           (unsigned long)version.dwMinorVersion, (unsigned long)version.dwBuildNumber);
}

/* Extension: Wine identifies itself through an ntdll export; null on real Windows. */
static void json_wine_version(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    WineGetVersionFn wine_get_version =
        ntdll ? (WineGetVersionFn)(void *)GetProcAddress(ntdll, "wine_get_version") : NULL;
    if (wine_get_version)
        json_str(wine_get_version());
    else
        fputs("null", stdout);
}

static void json_hostname(void)
{
    wchar_t name[256];
    DWORD size = sizeof name / sizeof name[0];
    if (GetComputerNameExW(ComputerNameDnsHostname, name, &size))
        json_wstr(name);
    else
        fputs("null", stdout);
}

/* true/false from the token's elevation, null when the token cannot be read. */
static void json_admin(void)
{
    HANDLE token;
    TOKEN_ELEVATION elevation;
    DWORD size = 0;
    BOOL known = FALSE;
    if (OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
        known = GetTokenInformation(token, TokenElevation, &elevation, sizeof elevation, &size);
        CloseHandle(token);
    }
    if (known)
        json_bool(elevation.TokenIsElevated != 0);
    else
        fputs("null", stdout);
}

static int verb_info(void)
{
    printf("{\"agent\": \"%s/%s\", \"protocol\": %d, \"os\": \"windows\", \"build\": ",
           AGENT_NAME, AGENT_VERSION, PROTOCOL_VERSION);
    json_os_build();
    fputs(", \"hostname\": ", stdout);
    json_hostname();
    fputs(", \"admin\": ", stdout);
    json_admin();
    fputs(", \"wine\": ", stdout);
    json_wine_version();
    fputs("}\n", stdout);
    return 0;
}

static int verb_version(void)
{
    printf("{\"agent\": \"%s/%s\", \"version\": \"%s\", \"protocol\": %d}\n", AGENT_NAME,
           AGENT_VERSION, AGENT_VERSION, PROTOCOL_VERSION);
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------- */

static int expect_args(int argc, int wanted, const wchar_t *verb)
{
    if (argc - 2 != wanted)
        return bad_argument(L"%ls takes %d argument(s), got %d", verb, wanted, argc - 2);
    return 0;
}

static int dispatch(int argc, wchar_t **argv)
{
    const wchar_t *verb;
    ADDRESS_FAMILY family = 0;
    NET_IFINDEX ifindex = 0;
    int rc;

    if (argc < 2)
        return bad_argument(L"no verb given");
    verb = argv[1];

    if (!wcscmp(verb, L"--version"))
        return (rc = expect_args(argc, 0, verb)) ? rc : verb_version();
    if (!wcscmp(verb, L"info"))
        return (rc = expect_args(argc, 0, verb)) ? rc : verb_info();
    if (!wcscmp(verb, L"interfaces"))
        return (rc = expect_args(argc, 0, verb)) ? rc : verb_interfaces();
    if (!wcscmp(verb, L"stacks"))
        return (rc = expect_args(argc, 0, verb)) ? rc : verb_stacks();

    /* The remaining verbs all start with FAMILY (and, but for table, IFINDEX). */
    if (!wcscmp(verb, L"table"))
        rc = expect_args(argc, 1, verb);
    else if (!wcscmp(verb, L"flush"))
        rc = expect_args(argc, 2, verb);
    else if (!wcscmp(verb, L"add") || !wcscmp(verb, L"add-static"))
        rc = expect_args(argc, 4, verb);
    else if (!wcscmp(verb, L"delete"))
        rc = expect_args(argc, 3, verb);
    else
        return bad_argument(L"unknown verb: %ls", verb);
    if (rc)
        return rc;
    if (!parse_family(argv[2], &family))
        return bad_argument(L"FAMILY must be an unsigned 16-bit number, got: %ls", argv[2]);
    if (argc > 3 && !parse_ifindex(argv[3], &ifindex))
        return bad_argument(L"IFINDEX must be an unsigned 32-bit number, got: %ls", argv[3]);

    if (!wcscmp(verb, L"table"))
        return verb_table(family);
    if (!wcscmp(verb, L"flush"))
        return verb_flush(family, ifindex);
    if (!wcscmp(verb, L"delete"))
        return verb_add_or_delete(FALSE, family, ifindex, argv[4], NULL);
    return verb_add_or_delete(TRUE, family, ifindex, argv[4], argv[5]);
}

/* A crash inside a DLL call must still end in one JSON object. A Wine stub is an
   unimplemented export: the same answer as a missing one, exit 0. Anything else is a real
   crash: reported, exit 1 (the harness's agent error). */
static LONG WINAPI on_unhandled_exception(EXCEPTION_POINTERS *info)
{
    DWORD code = info->ExceptionRecord->ExceptionCode;
    if (g_reply_complete)
        ExitProcess(0); /* the one JSON object is already out */
    if (code == EXCEPTION_WINE_STUB) {
        printf("{\"status\": null, \"error\": \"not-exported\", \"detail\": "
               "\"iphlpapi.dll's %s is a stub (exception 0x%08lx)\"}\n",
               g_calling, (unsigned long)code);
        fflush(stdout);
        ExitProcess(0);
    }
    printf("{\"status\": null, \"error\": \"exception\", \"detail\": "
           "\"exception 0x%08lx after looking up %s\"}\n", (unsigned long)code, g_calling);
    fflush(stdout);
    ExitProcess(EXIT_CRASH);
    return EXCEPTION_EXECUTE_HANDLER;
}

int wmain(int argc, wchar_t **argv)
{
    WSADATA wsa;
    int rc;

    /* "\n", not "\r\n": the harness reads stdout as bytes. */
    _setmode(_fileno(stdout), _O_BINARY);
    /* A missing DLL must not pop up a dialog box on an unattended device. */
    SetErrorMode(SEM_FAILCRITICALERRORS | SEM_NOOPENFILEERRORBOX | SEM_NOGPFAULTERRORBOX);
    SetUnhandledExceptionFilter(on_unhandled_exception);
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) {
        fputs("{\"status\": null, \"error\": \"winsock\", \"detail\": \"WSAStartup failed\"}\n",
              stdout);
        return 1;
    }
    rc = dispatch(argc, argv);
    fflush(stdout);
    WSACleanup();
    return rc;
}
