/*
 * neighcheck Windows agent: the device side of the agent protocol (DESIGN.md section 2a, with
 * the issue-13 extensions) on iphlpapi.
 *
 *   neighcheck_agent.exe interfaces | stacks | info | --version
 *   neighcheck_agent.exe table FAMILY
 *   neighcheck_agent.exe flush FAMILY IFINDEX
 *   neighcheck_agent.exe add FAMILY IFINDEX ADDRESS LLADDR      (alias: add-static)
 *   neighcheck_agent.exe delete FAMILY IFINDEX ADDRESS [ADDRESS ...]
 *   neighcheck_agent.exe lock WAIT_SECONDS HOLDER
 *
 * Exactly one JSON object goes to stdout; exit 0, or 2 for a bad argument.
 * Families are Windows numbers (AF_UNSPEC=0, AF_INET=2, AF_INET6=23) parsed as unsigned
 * 16-bit values and passed to the API unchanged, so invalid-family cases reach the API.
 * Status codes are the raw Win32 codes the functions return; every reply of flush, add,
 * delete and table says so with "status_space": "win32".
 *
 * Every NETIOAPI function is resolved with GetProcAddress: an implementation that lacks an
 * export (Wine has no FlushIpNetTable2) is reported as "not-exported" instead of the loader
 * refusing to start the program. An export that is only a stub (Wine raises
 * EXCEPTION_WINE_STUB when one is called) is reported the same way by the unhandled-exception
 * filter; every verb calls its API functions before it prints anything, so that report is
 * the only output.
 *
 * iphlpapi.dll is loaded from System32 only. It is not a KnownDLL, so a plain
 * LoadLibrary("iphlpapi.dll") would search the agent's own folder first, and the agent is
 * uploaded into a user-writable folder: a DLL planted there would run as the (elevated)
 * agent. SetDefaultDllDirectories covers every later load in the process too (the DLLs that
 * system DLLs load on demand).
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
#include <sddl.h>
#include <fcntl.h>
#include <io.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

#define AGENT_NAME "neighcheck-windows-agent"
#define AGENT_VERSION "1.1.0"
#define PROTOCOL_VERSION 1

#define EXIT_BAD_ARGUMENT 2
#define EXIT_CRASH 1
/* What Wine raises when a program calls an export that is declared but not implemented. */
#define EXCEPTION_WINE_STUB 0x80000100

#ifndef LOAD_LIBRARY_SEARCH_SYSTEM32
#define LOAD_LIBRARY_SEARCH_SYSTEM32 0x00000800
#endif

/* Which DLL function is being called, for the exception filter's report. */
static const char *g_calling = "(none)";
/* Set once the reply is written and flushed: only FreeMibTable runs after that. */
static BOOL g_reply_complete;
/* The verb's replies carry status_space (flush, add, delete, table): so does the filter's. */
static BOOL g_status_space;
/* Why iphlpapi.dll is not loaded (GetLastError of the load), 0 while it is or was not tried. */
static DWORD g_load_error;

/* Test hook: a build can resolve another export in place of FlushIpNetTable2 (e.g. a Wine
   stub, to check that a stub is reported and not a crash). Production builds never set it. */
#ifndef FLUSH_EXPORT
#define FLUSH_EXPORT "FlushIpNetTable2"
#endif
/* Test hook: the group `info` checks for network_config_operator (a SID string), so a test
   can name a group the token does have. Production: Network Configuration Operators. */
#ifndef NCO_SID
#define NCO_SID L"S-1-5-32-556"
#endif
/* Test hook: NCK_TEST_NOT_ELEVATED makes `info` read the token as not elevated, so a test
   under Wine (whose token is always elevated) can show that `admin` follows the group too.
   NCK_TEST_UNSAFE_DLL_SEARCH restores the default DLL search (the agent's folder first), so
   a test can show that its planted-DLL check catches that. Production builds set neither. */

typedef DWORD(WINAPI *GetIpNetTable2Fn)(ADDRESS_FAMILY, PMIB_IPNET_TABLE2 *);
typedef DWORD(WINAPI *FlushIpNetTable2Fn)(ADDRESS_FAMILY, NET_IFINDEX);
typedef DWORD(WINAPI *IpNetEntry2Fn)(const MIB_IPNET_ROW2 *);
typedef DWORD(WINAPI *SetIpNetEntry2Fn)(MIB_IPNET_ROW2 *);
typedef BOOL(WINAPI *SetDefaultDllDirectoriesFn)(DWORD);
typedef DWORD(WINAPI *GetIfTable2Fn)(PMIB_IF_TABLE2 *);
typedef DWORD(WINAPI *GetIpInterfaceTableFn)(ADDRESS_FAMILY, PMIB_IPINTERFACE_TABLE *);
typedef VOID(WINAPI *FreeMibTableFn)(PVOID);
typedef LONG(WINAPI *RtlGetVersionFn)(PRTL_OSVERSIONINFOW);
typedef const char *(CDECL *WineGetVersionFn)(void);

/* ---- serve mode: replies collected per request -------------------------------------- */
/* `serve` (a protocol extension) answers requests read from stdin, one per line, with one
   JSON line each that carries the request's id. Every verb prints its reply through printf,
   fputs and putchar on stdout; in serve mode the macros below collect that output in memory
   so that serve_emit can write it as one line with the id spliced in. Per call nothing
   changes: the output goes straight to stdout. */
#define SERVE_ID_MAX 64
static BOOL g_serving;
static char *g_out;            /* the reply being collected */
static size_t g_out_len, g_out_cap;
static BOOL g_out_failed;      /* out of memory while collecting */
static BOOL g_emitted;         /* this request's reply is written */
static char g_request_id[SERVE_ID_MAX + 1];
/* The API call's own time (QueryPerformanceCounter around it), for "elapsed_us". */
static LARGE_INTEGER g_api_t0, g_api_t1;

static void out_bytes(const char *data, size_t len)
{
    if (g_out_failed)
        return;
    if (g_out_len + len + 1 > g_out_cap) {
        size_t cap = g_out_cap ? g_out_cap : 4096;
        char *grown;
        while (cap < g_out_len + len + 1)
            cap *= 2;
        grown = realloc(g_out, cap);
        if (!grown) {
            g_out_failed = TRUE;
            return;
        }
        g_out = grown;
        g_out_cap = cap;
    }
    memcpy(g_out + g_out_len, data, len);
    g_out_len += len;
}

static int reply_vprintf(const char *fmt, va_list ap)
{
    char small[512];
    int n;
    va_list again;
    if (!g_serving)
        return vprintf(fmt, ap);
    va_copy(again, ap);
    n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small) {
        char *big = malloc((size_t)n + 1);
        if (big) {
            vsnprintf(big, (size_t)n + 1, fmt, again);
            out_bytes(big, (size_t)n);
            free(big);
        } else {
            g_out_failed = TRUE;
        }
    } else if (n > 0) {
        out_bytes(small, (size_t)n);
    }
    va_end(again);
    return n;
}

static int reply_printf(const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = reply_vprintf(fmt, ap);
    va_end(ap);
    return n;
}

static int reply_fputs(const char *text, FILE *stream)
{
    if (!g_serving || stream != stdout)
        return fputs(text, stream);
    out_bytes(text, strlen(text));
    return 0;
}

static int reply_putchar(int c)
{
    char ch = (char)c;
    if (!g_serving)
        return putchar(c);
    out_bytes(&ch, 1);
    return c;
}

#define printf reply_printf
#define fputs reply_fputs
#define putchar reply_putchar

/* Write this request's reply as one line: {"id": "ID", ["exit": N, ] ...the reply's
   members}. `code` is what the request's own run would have exited with. */
static void serve_emit(int code)
{
    size_t len = g_out_len, body_len;
    const char *body; /* the reply's members: what is between its braces */
    if (!g_serving || g_emitted)
        return;
    g_emitted = TRUE;
    while (len > 0 && (g_out[len - 1] == '\n' || g_out[len - 1] == '\r'))
        len--;
    if (!g_out_failed && len >= 2 && g_out[0] == '{' && g_out[len - 1] == '}') {
        body = g_out + 1;
        body_len = len - 2;
        while (body_len > 0 && *body == ' ') {
            body++;
            body_len--;
        }
    } else {
        body = g_out_failed ? "\"status\": null, \"error\": \"out-of-memory\", \"detail\": "
                              "\"the reply did not fit in memory\""
                            : "\"status\": null, \"error\": \"no-reply\", \"detail\": "
                              "\"the verb printed no JSON object\"";
        body_len = strlen(body);
        if (code == 0)
            code = EXIT_CRASH;
    }
    fwrite("{", 1, 1, stdout);
    if (g_request_id[0])
        fprintf(stdout, "\"id\": \"%s\"%s", g_request_id, body_len || code ? ", " : "");
    if (code)
        fprintf(stdout, "\"exit\": %d%s", code, body_len ? ", " : "");
    fwrite(body, 1, body_len, stdout);
    fwrite("}\n", 1, 2, stdout);
    fflush(stdout);
}

static void api_timer_start(void) { QueryPerformanceCounter(&g_api_t0); }
static void api_timer_stop(void) { QueryPerformanceCounter(&g_api_t1); }

/* "elapsed_us": the API call's own time, measured on the device. */
static void json_elapsed(void)
{
    LARGE_INTEGER frequency;
    unsigned long long ticks = (unsigned long long)(g_api_t1.QuadPart - g_api_t0.QuadPart);
    if (!QueryPerformanceFrequency(&frequency) || frequency.QuadPart <= 0)
        return;
    printf(", \"elapsed_us\": %llu",
           ticks / (unsigned long long)frequency.QuadPart * 1000000ull +
               ticks % (unsigned long long)frequency.QuadPart * 1000000ull /
                   (unsigned long long)frequency.QuadPart);
}

static int serve(void);

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
          " | add FAMILY IFINDEX ADDRESS LLADDR | delete FAMILY IFINDEX ADDRESS [ADDRESS ...]"
          " | lock WAIT_SECONDS HOLDER | --version\"}\n", stdout);
    return EXIT_BAD_ARGUMENT;
}

static void json_status_space(void)
{
    if (g_status_space)
        fputs(", \"status_space\": \"win32\"", stdout);
}

static int not_exported(const char *function)
{
    fputs("{\"status\": null", stdout);
    json_status_space();
    if (g_load_error)
        printf(", \"error\": \"not-exported\", \"detail\": \"iphlpapi.dll could not be loaded from "
               "System32 (error %lu), so there is no %s\"}\n", (unsigned long)g_load_error, function);
    else
        printf(", \"error\": \"not-exported\", \"detail\": \"iphlpapi.dll has no %s\"}\n", function);
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
    serve_emit(0); /* out now: a fault while freeing must not lose it */
    fflush(stdout);
    g_reply_complete = TRUE;
}

/* Every later DLL load in this process (by name, and the imports of any DLL it loads)
   searches System32 only, never the agent's folder, the current directory or PATH. Resolved
   at run time: Windows 7 has it only with KB2533623, and the loader must not refuse to start. */
static void restrict_dll_search(void)
{
#ifndef NCK_TEST_UNSAFE_DLL_SEARCH
    HMODULE kernel32 = GetModuleHandleW(L"kernel32.dll");
    SetDefaultDllDirectoriesFn set_dirs = kernel32
        ? (SetDefaultDllDirectoriesFn)(void *)GetProcAddress(kernel32, "SetDefaultDllDirectories")
        : NULL;
    if (set_dirs)
        set_dirs(LOAD_LIBRARY_SEARCH_SYSTEM32);
#endif
}

static HMODULE iphlpapi(void)
{
    static HMODULE module;
    static BOOL tried;
    if (!tried) {
        tried = TRUE;
#ifdef NCK_TEST_UNSAFE_DLL_SEARCH
        module = LoadLibraryW(L"iphlpapi.dll");
#else
        /* System32 for iphlpapi.dll and for everything it imports. Where the flag is unknown
           (ERROR_INVALID_PARAMETER before KB2533623) this fails: no unsafe fallback. */
        module = LoadLibraryExW(L"iphlpapi.dll", NULL, LOAD_LIBRARY_SEARCH_SYSTEM32);
#endif
        if (!module)
            g_load_error = GetLastError() ? GetLastError() : ERROR_MOD_NOT_FOUND;
    }
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

/* One family's GetIpInterfaceTable: which interfaces have that family bound. */
struct ip_interfaces {
    DWORD status;
    PMIB_IPINTERFACE_TABLE table;
};

static void get_ip_interfaces(ADDRESS_FAMILY family, struct ip_interfaces *out)
{
    GetIpInterfaceTableFn get_table =
        (GetIpInterfaceTableFn)(void *)iphlpapi_export("GetIpInterfaceTable");
    out->table = NULL;
    out->status = get_table ? get_table(family, &out->table) : ERROR_PROC_NOT_FOUND;
    if (out->status != NO_ERROR)
        out->table = NULL; /* never trust (or free) what a failed call left there */
}

/* ERROR_NOT_FOUND: no interface has the family; ERROR_NOT_SUPPORTED: no stack for it
   (GetIpInterfaceTable's documented codes). Either way no interface has it. */
static BOOL family_absent(DWORD status)
{
    return status == ERROR_NOT_FOUND || status == ERROR_NOT_SUPPORTED;
}

static BOOL has_ip_interface(const struct ip_interfaces *ipif, NET_IFINDEX index)
{
    for (ULONG i = 0; ipif->table && i < ipif->table->NumEntries; i++)
        if (ipif->table->Table[i].InterfaceIndex == index)
            return TRUE;
    return FALSE;
}

static int verb_interfaces(void)
{
    GetIfTable2Fn get_if_table = (GetIfTable2Fn)(void *)iphlpapi_export("GetIfTable2");
    PMIB_IF_TABLE2 table = NULL;
    struct ip_interfaces v4, v6;
    DWORD status;
    BOOL first = TRUE, families;

    if (!get_if_table)
        return not_exported("GetIfTable2");
    status = get_if_table(&table);
    if (status != NO_ERROR) {
        printf("{\"status\": %lu, \"interfaces\": []}\n", (unsigned long)status);
        return 0;
    }
    get_ip_interfaces(AF_INET, &v4);
    get_ip_interfaces(AF_INET6, &v6);
    /* Per-interface families only when both tables gave an answer and at least one listed
       interfaces: Wine 8 fails both with ERROR_NOT_SUPPORTED, which would otherwise read as
       "no interface has any family". Without them the harness uses the device's stacks. */
    families = (v4.status == NO_ERROR || family_absent(v4.status)) &&
               (v6.status == NO_ERROR || family_absent(v6.status)) &&
               (v4.status == NO_ERROR || v6.status == NO_ERROR);
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
        printf(", \"type\": %lu", (unsigned long)row->Type);
        if (families) {
            BOOL ipv4 = has_ip_interface(&v4, row->InterfaceIndex);
            BOOL ipv6 = has_ip_interface(&v6, row->InterfaceIndex);
            printf(", \"families\": [%s%s%s]", ipv4 ? "\"ipv4\"" : "", ipv4 && ipv6 ? ", " : "",
                   ipv6 ? "\"ipv6\"" : "");
        }
        fputs("}", stdout);
    }
    /* Extension: the raw GetIpInterfaceTable codes behind "families" (or its absence). */
    printf("], \"ip_interface_status\": {\"ipv4\": %lu, \"ipv6\": %lu}}\n",
           (unsigned long)v4.status, (unsigned long)v6.status);
    reply_complete();
    free_mib_table(table);
    free_mib_table(v4.table);
    free_mib_table(v6.table);
    return 0;
}

/* How many IP interfaces the stack reports for a family, or -1 if it cannot tell. */
static long ip_interface_count(ADDRESS_FAMILY family)
{
    struct ip_interfaces ipif;
    long count;
    get_ip_interfaces(family, &ipif);
    if (ipif.status != NO_ERROR)
        return -1;
    count = (long)ipif.table->NumEntries;
    free_mib_table(ipif.table);
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

/* The protocol's state for a row; NULL for a State value the agent does not know. */
static const char *state_name(const MIB_IPNET_ROW2 *row)
{
    /* IsUnreachable: the stack gave up on the neighbor whatever State says; such an entry
       is not usable, and seeding must not count it as landed. */
    if (row->IsUnreachable)
        return "unreachable";
    switch (row->State) {
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
    DWORD api_status, status;

    if (!get_table)
        return not_exported("GetIpNetTable2");
    api_timer_start();
    api_status = get_table(family, &table);
    api_timer_stop();
    /* ERROR_NOT_FOUND is how GetIpNetTable2 says "no entries": an empty table, not a
       failure. The raw code stays in api_status. */
    status = api_status == ERROR_NOT_FOUND ? NO_ERROR : api_status;
    if (api_status != NO_ERROR && api_status != ERROR_NOT_FOUND)
        table = NULL; /* never trust (or free) what a failed call left there */
    printf("{\"status\": %lu, \"status_space\": \"win32\"", (unsigned long)status);
    json_elapsed();
    fputs(", ", stdout);
    if (api_status != status)
        printf("\"api_status\": %lu, ", (unsigned long)api_status);
    fputs("\"entries\": [", stdout);
    for (ULONG i = 0; api_status == NO_ERROR && table && i < table->NumEntries; i++) {
        const MIB_IPNET_ROW2 *row = &table->Table[i];
        const char *state = state_name(row);
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
    free_mib_table(table); /* also an empty table handed out with ERROR_NOT_FOUND */
    return 0;
}

static int verb_flush(ADDRESS_FAMILY family, NET_IFINDEX ifindex)
{
    FlushIpNetTable2Fn flush = (FlushIpNetTable2Fn)(void *)iphlpapi_export(FLUSH_EXPORT);
    DWORD status;
    if (!flush)
        return not_exported(FLUSH_EXPORT);
    api_timer_start();
    status = flush(family, ifindex);
    api_timer_stop();
    printf("{\"status\": %lu, \"status_space\": \"win32\"", (unsigned long)status);
    json_elapsed();
    fputs("}\n", stdout);
    return 0;
}

/* The row add and delete pass: what CreateIpNetEntry2/DeleteIpNetEntry2 require
   (Address, InterfaceIndex; for add PhysicalAddress and its length), everything else zero
   (InterfaceLuid zero: the index names the interface). ADDRESS's own kind picks the
   sockaddr layout; FAMILY goes into si_family unchanged (pass-through, like flush). */
static void fill_row(MIB_IPNET_ROW2 *row, ADDRESS_FAMILY family, NET_IFINDEX ifindex,
                     const SOCKADDR_INET *address)
{
    memset(row, 0, sizeof *row);
    row->Address = *address;
    row->Address.si_family = family;
    row->InterfaceIndex = ifindex;
    row->State = NlnsPermanent; /* a static entry */
}

static int verb_add(ADDRESS_FAMILY family, NET_IFINDEX ifindex, const wchar_t *address,
                    const wchar_t *lladdr)
{
    IpNetEntry2Fn create = (IpNetEntry2Fn)(void *)iphlpapi_export("CreateIpNetEntry2");
    SetIpNetEntry2Fn set;
    SOCKADDR_INET parsed;
    MIB_IPNET_ROW2 row;
    UCHAR physical[IF_MAX_PHYS_ADDRESS_LENGTH];
    ULONG physical_len = 0;
    DWORD api_status, status;

    if (!parse_address(address, &parsed))
        return bad_argument(L"not an IPv4 or IPv6 address: %ls", address);
    if (!parse_lladdr(lladdr, physical, &physical_len))
        return bad_argument(L"not a link-layer address (hex bytes joined by ':'): %ls", lladdr);
    if (!create)
        return not_exported("CreateIpNetEntry2");
    fill_row(&row, family, ifindex, &parsed);
    memcpy(row.PhysicalAddress, physical, physical_len);
    row.PhysicalAddressLength = physical_len;
    api_status = create(&row);
    if (api_status != ERROR_OBJECT_ALREADY_EXISTS) {
        printf("{\"status\": %lu, \"status_space\": \"win32\"}\n", (unsigned long)api_status);
        return 0;
    }
    /* An entry for the address exists (learned, or left by an earlier run): make it the
       static entry that was asked for. SetIpNetEntry2 changes it in place; without that
       export, delete and create again. */
    set = (SetIpNetEntry2Fn)(void *)iphlpapi_export("SetIpNetEntry2");
    if (set) {
        status = set(&row);
        if (status != NO_ERROR) {
            printf("{\"status\": %lu, \"status_space\": \"win32\", \"api_status\": %lu, "
                   "\"replaced\": false, \"detail\": \"CreateIpNetEntry2 returned %lu "
                   "(ERROR_OBJECT_ALREADY_EXISTS); SetIpNetEntry2 returned %lu\"}\n",
                   (unsigned long)status, (unsigned long)api_status, (unsigned long)api_status,
                   (unsigned long)status);
            return 0;
        }
    } else {
        IpNetEntry2Fn remove = (IpNetEntry2Fn)(void *)iphlpapi_export("DeleteIpNetEntry2");
        if (!remove) {
            printf("{\"status\": %lu, \"status_space\": \"win32\", \"replaced\": false, "
                   "\"detail\": \"CreateIpNetEntry2 returned %lu (ERROR_OBJECT_ALREADY_EXISTS) "
                   "and iphlpapi.dll has neither SetIpNetEntry2 nor DeleteIpNetEntry2 to replace "
                   "the entry\"}\n", (unsigned long)api_status, (unsigned long)api_status);
            return 0;
        }
        status = remove(&row);
        if (status == NO_ERROR || status == ERROR_NOT_FOUND) {
            g_calling = "CreateIpNetEntry2";
            status = create(&row);
        }
        if (status != NO_ERROR) {
            printf("{\"status\": %lu, \"status_space\": \"win32\", \"api_status\": %lu, "
                   "\"replaced\": false, \"detail\": \"CreateIpNetEntry2 returned %lu "
                   "(ERROR_OBJECT_ALREADY_EXISTS); replacing it by delete and create "
                   "returned %lu\"}\n", (unsigned long)status, (unsigned long)api_status,
                   (unsigned long)api_status, (unsigned long)status);
            return 0;
        }
    }
    printf("{\"status\": 0, \"status_space\": \"win32\", \"api_status\": %lu, "
           "\"replaced\": true}\n", (unsigned long)api_status);
    return 0;
}

/* One DeleteIpNetEntry2 per address, every address parsed before the first call. S is 0
   when each address was deleted or not there (ERROR_NOT_FOUND), else the first other code. */
static int verb_delete(ADDRESS_FAMILY family, NET_IFINDEX ifindex, int count,
                       wchar_t **addresses)
{
    IpNetEntry2Fn remove = (IpNetEntry2Fn)(void *)iphlpapi_export("DeleteIpNetEntry2");
    SOCKADDR_INET *parsed;
    DWORD *statuses, status = NO_ERROR;

    parsed = calloc((size_t)count, sizeof *parsed);
    statuses = calloc((size_t)count, sizeof *statuses);
    if (!parsed || !statuses) {
        fputs("{\"status\": null, \"status_space\": \"win32\", \"error\": \"out-of-memory\", "
              "\"detail\": \"too many addresses\"}\n", stdout);
        return EXIT_CRASH;
    }
    for (int i = 0; i < count; i++)
        if (!parse_address(addresses[i], &parsed[i]))
            return bad_argument(L"not an IPv4 or IPv6 address: %ls", addresses[i]);
    if (!remove)
        return not_exported("DeleteIpNetEntry2");
    for (int i = 0; i < count; i++) {
        MIB_IPNET_ROW2 row;
        fill_row(&row, family, ifindex, &parsed[i]);
        statuses[i] = remove(&row);
        if (status == NO_ERROR && statuses[i] != NO_ERROR && statuses[i] != ERROR_NOT_FOUND)
            status = statuses[i];
    }
    printf("{\"status\": %lu, \"status_space\": \"win32\", \"results\": [", (unsigned long)status);
    for (int i = 0; i < count; i++) {
        fputs(i ? ", {\"address\": " : "{\"address\": ", stdout);
        json_wstr(addresses[i]);
        printf(", \"status\": %lu}", (unsigned long)statuses[i]);
    }
    fputs("]}\n", stdout);
    free(parsed);
    free(statuses);
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

/* Tri-state answers for info: TRUE, FALSE, or -1 when the token cannot tell. */
#define UNKNOWN (-1)

static void json_tristate(int value)
{
    if (value == UNKNOWN)
        fputs("null", stdout);
    else
        json_bool(value);
}

/* The token's elevation (an administrator's full token; over SSH an administrator always
   gets it). */
static int token_elevated(void)
{
#ifdef NCK_TEST_NOT_ELEVATED
    return FALSE;
#else
    HANDLE token;
    TOKEN_ELEVATION elevation;
    DWORD size = 0;
    BOOL known = FALSE;
    if (OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) {
        known = GetTokenInformation(token, TokenElevation, &elevation, sizeof elevation, &size);
        CloseHandle(token);
    }
    return known ? elevation.TokenIsElevated != 0 : UNKNOWN;
#endif
}

/* Membership of Network Configuration Operators, whose members may change the neighbor
   table without elevation. CheckTokenMembership counts an enabled group only: UAC's filtered
   token carries this group deny-only, and then it grants nothing. */
static int network_config_operator(void)
{
    PSID sid = NULL;
    BOOL member = FALSE, ok;
    if (!ConvertStringSidToSidW(NCO_SID, &sid))
        return UNKNOWN;
    ok = CheckTokenMembership(NULL, sid, &member);
    LocalFree(sid);
    return ok ? member != 0 : UNKNOWN;
}

static int verb_info(void)
{
    int elevated = token_elevated(), nco = network_config_operator(), admin;
    /* admin: the account may flush (RET-ACCESS cannot fail on it). Either right suffices;
       unknown only when neither says yes and one cannot tell. */
    if (elevated == TRUE || nco == TRUE)
        admin = TRUE;
    else if (elevated == UNKNOWN || nco == UNKNOWN)
        admin = UNKNOWN;
    else
        admin = FALSE;
    printf("{\"agent\": \"%s/%s\", \"protocol\": %d, \"os\": \"windows\", \"build\": ",
           AGENT_NAME, AGENT_VERSION, PROTOCOL_VERSION);
    json_os_build();
    fputs(", \"hostname\": ", stdout);
    json_hostname();
    fputs(", \"admin\": ", stdout);
    json_tristate(admin);
    fputs(", \"elevated\": ", stdout);
    json_tristate(elevated);
    fputs(", \"network_config_operator\": ", stdout);
    json_tristate(nco);
    fputs(", \"wine\": ", stdout);
    json_wine_version();
    fputs(", \"serve\": true}\n", stdout);
    return 0;
}

/* ---- lock ------------------------------------------------------------------------------ */

#define LOCK_RETRY_MS 100
#define HOLDER_MAX_BYTES 4096

/* %ProgramData%\NAME into out; FALSE when ProgramData is not set or too long. */
static BOOL program_data_path(const wchar_t *name, wchar_t *out, DWORD size)
{
    DWORD n = GetEnvironmentVariableW(L"ProgramData", out, size);
    if (n == 0 || n + 1 + wcslen(name) >= size)
        return FALSE;
    out[n] = L'\\';
    wcscpy(out + n + 1, name);
    return TRUE;
}

/* The holder file's text as a JSON string: UTF-8 as this agent writes it, UTF-16 (BOM) or
   the ANSI code page as a PowerShell lock command may have; trailing blanks dropped. */
static void json_holder_file(const wchar_t *path)
{
    char bytes[HOLDER_MAX_BYTES];
    wchar_t text[HOLDER_MAX_BYTES + 1];
    DWORD got = 0;
    int n = 0;
    HANDLE file = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE |
                              FILE_SHARE_DELETE, NULL, OPEN_EXISTING, 0, NULL);
    if (file != INVALID_HANDLE_VALUE) {
        if (!ReadFile(file, bytes, sizeof bytes, &got, NULL))
            got = 0;
        CloseHandle(file);
    }
    if (got >= 2 && (UCHAR)bytes[0] == 0xFF && (UCHAR)bytes[1] == 0xFE) {
        n = (int)(got - 2) / 2;
        memcpy(text, bytes + 2, (size_t)n * sizeof(wchar_t));
    } else {
        const char *start = bytes;
        if (got >= 3 && !memcmp(bytes, "\xEF\xBB\xBF", 3)) {
            start += 3;
            got -= 3;
        }
        if (got > 0) {
            n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, start, (int)got, text,
                                    HOLDER_MAX_BYTES);
            if (n <= 0)
                n = MultiByteToWideChar(CP_ACP, 0, start, (int)got, text, HOLDER_MAX_BYTES);
        }
    }
    if (n < 0)
        n = 0;
    while (n > 0 && (text[n - 1] == L'\n' || text[n - 1] == L'\r' || text[n - 1] == L' ' ||
                     text[n - 1] == L'\0'))
        n--;
    text[n] = L'\0';
    json_wstr(text);
}

static void write_holder_file(const wchar_t *path, const wchar_t *holder)
{
    char utf8[HOLDER_MAX_BYTES];
    DWORD written;
    int n = WideCharToMultiByte(CP_UTF8, 0, holder, -1, utf8, sizeof utf8, NULL, NULL);
    HANDLE file = CreateFileW(path, GENERIC_WRITE, FILE_SHARE_READ, NULL, CREATE_ALWAYS,
                              FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE)
        return; /* the lock is held all the same; only a waiter's message is poorer */
    if (n > 1)
        WriteFile(file, utf8, (DWORD)(n - 1), &written, NULL);
    CloseHandle(file);
}

/* The device lock (protocol13 item 3): %ProgramData%\neighcheck.lock opened with no sharing
   is held by this process until its stdin closes (the harness's channel ends, or the
   connection or the harness dies); Windows closes the handle when the process goes, so a
   lock is never left behind. */
static int verb_lock(double wait_seconds, const wchar_t *holder)
{
    wchar_t path[MAX_PATH], holder_path[MAX_PATH];
    ULONGLONG deadline = GetTickCount64() + (ULONGLONG)(wait_seconds * 1000.0);
    HANDLE lock, in;
    DWORD error;
    char buf[512];
    DWORD got;

    if (!program_data_path(L"neighcheck.lock", path, MAX_PATH) ||
        !program_data_path(L"neighcheck.lock.holder", holder_path, MAX_PATH)) {
        fputs("{\"status\": null, \"locked\": false, \"error\": \"no-programdata\", \"detail\": "
              "\"%ProgramData% is not set (or too long) in the agent's environment\"}\n", stdout);
        return 0;
    }
    for (;;) {
        lock = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, 0 /* no sharing */, NULL,
                           OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
        if (lock != INVALID_HANDLE_VALUE)
            break;
        error = GetLastError();
        if (error == ERROR_SHARING_VIOLATION && GetTickCount64() < deadline) {
            Sleep(LOCK_RETRY_MS);
            continue;
        }
        printf("{\"status\": %lu, \"status_space\": \"win32\", \"locked\": false, \"holder\": ",
               (unsigned long)error);
        json_holder_file(holder_path);
        if (error != ERROR_SHARING_VIOLATION) {
            fputs(", \"error\": \"lock-failed\", \"detail\": ", stdout);
            json_wstr(path);
        }
        fputs("}\n", stdout);
        return 0;
    }
    write_holder_file(holder_path, holder);
    fputs("{\"status\": 0, \"locked\": true}\n", stdout);
    fflush(stdout);
    in = GetStdHandle(STD_INPUT_HANDLE);
    while (in != NULL && in != INVALID_HANDLE_VALUE && ReadFile(in, buf, sizeof buf, &got, NULL) &&
           got > 0)
        ;
    CloseHandle(lock);
    return 0;
}

/* The no-op verb of serve mode: one round trip and nothing else. */
static int verb_ping(void)
{
    fputs("{\"pong\": true}\n", stdout);
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

/* WAIT_SECONDS: digits with an optional fraction ("30", "2.5"), at most a day. */
static BOOL parse_seconds(const wchar_t *s, double *out)
{
    double value = 0, scale = 1;
    BOOL digits = FALSE, fraction = FALSE;
    for (; *s; s++) {
        if (*s == L'.' && !fraction) {
            fraction = TRUE;
        } else if (*s >= L'0' && *s <= L'9') {
            digits = TRUE;
            if (fraction)
                value += (*s - L'0') * (scale /= 10);
            else
                value = value * 10 + (*s - L'0');
            if (value > 86400)
                return FALSE;
        } else {
            return FALSE;
        }
    }
    *out = value;
    return digits;
}

static int dispatch(int argc, wchar_t **argv)
{
    const wchar_t *verb;
    ADDRESS_FAMILY family = 0;
    NET_IFINDEX ifindex = 0;
    double wait_seconds;
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
    if (!wcscmp(verb, L"ping"))
        return (rc = expect_args(argc, 0, verb)) ? rc : verb_ping();
    if (g_serving && (!wcscmp(verb, L"lock") || !wcscmp(verb, L"serve")))
        return bad_argument(L"%ls cannot run inside serve (it reads stdin)", verb);
    if (!wcscmp(verb, L"serve"))
        return (rc = expect_args(argc, 0, verb)) ? rc : serve();
    if (!wcscmp(verb, L"lock")) {
        if ((rc = expect_args(argc, 2, verb)))
            return rc;
        if (!parse_seconds(argv[2], &wait_seconds))
            return bad_argument(L"WAIT_SECONDS must be a number of seconds (at most 86400), "
                                L"got: %ls", argv[2]);
        return verb_lock(wait_seconds, argv[3]);
    }

    /* The remaining verbs all start with FAMILY (and, but for table, IFINDEX). */
    if (!wcscmp(verb, L"table"))
        rc = expect_args(argc, 1, verb);
    else if (!wcscmp(verb, L"flush"))
        rc = expect_args(argc, 2, verb);
    else if (!wcscmp(verb, L"add") || !wcscmp(verb, L"add-static"))
        rc = expect_args(argc, 4, verb);
    else if (!wcscmp(verb, L"delete"))
        rc = argc - 2 >= 3 ? 0
             : bad_argument(L"delete takes FAMILY IFINDEX ADDRESS [ADDRESS ...], got %d "
                            L"argument(s)", argc - 2);
    else
        return bad_argument(L"unknown verb: %ls", verb);
    if (rc)
        return rc;
    g_status_space = TRUE;
    if (!parse_family(argv[2], &family))
        return bad_argument(L"FAMILY must be an unsigned 16-bit number, got: %ls", argv[2]);
    if (argc > 3 && !parse_ifindex(argv[3], &ifindex))
        return bad_argument(L"IFINDEX must be an unsigned 32-bit number, got: %ls", argv[3]);

    if (!wcscmp(verb, L"table"))
        return verb_table(family);
    if (!wcscmp(verb, L"flush"))
        return verb_flush(family, ifindex);
    if (!wcscmp(verb, L"delete"))
        return verb_delete(family, ifindex, argc - 4, argv + 4);
    return verb_add(family, ifindex, argv[4], argv[5]);
}

/* ---- serve ------------------------------------------------------------------------- */

#define SERVE_LINE_MAX (1 << 20) /* bytes per request line; a delete of 16k addresses fits */
#define SERVE_ARGS_MAX 65536

/* Requests on stdin, one per line: "[@ID ]VERB ARGS..." (words separated by spaces or tabs;
   the protocol's arguments never hold one). Each gets exactly one JSON line on stdout,
   flushed, with "id": "ID" when it had one and "exit": N where its own run would have exited
   N (a bad argument: 2). Ends at EOF. A fault in a DLL call ends the process after its
   report, as per call: the harness starts a new one. */
static int serve(void)
{
    static char line[SERVE_LINE_MAX + 2];
    static wchar_t wide[SERVE_LINE_MAX + 2];
    static wchar_t *argv[SERVE_ARGS_MAX + 1];
    _setmode(_fileno(stdin), _O_BINARY);
    g_serving = TRUE;
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strlen(line);
        char *words = line, *id_end;
        int argc = 1, rc, c;
        BOOL too_long = n == sizeof line - 1 && line[n - 1] != '\n';
        if (too_long) /* drop the rest of the line: it is no request of its own */
            while ((c = getchar()) != EOF && c != '\n')
                ;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = '\0';
        g_request_id[0] = '\0';
        g_out_len = 0;
        g_out_failed = g_emitted = g_reply_complete = g_status_space = FALSE;
        g_calling = "(none)";
        if (line[0] == '@') {
            id_end = line + 1 + strcspn(line + 1, " \t");
            if (id_end - line - 1 > SERVE_ID_MAX ||
                strspn(line + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                 "0123456789_.-") != (size_t)(id_end - line - 1)) {
                rc = bad_argument(L"a request id is at most %d of [A-Za-z0-9_.-]", SERVE_ID_MAX);
                serve_emit(rc);
                continue;
            }
            memcpy(g_request_id, line + 1, (size_t)(id_end - line - 1));
            g_request_id[id_end - line - 1] = '\0';
            words = id_end;
        }
        if (too_long) {
            serve_emit(bad_argument(L"a request line is longer than %d bytes", SERVE_LINE_MAX));
            continue;
        }
        if (!MultiByteToWideChar(CP_UTF8, 0, words, -1, wide, SERVE_LINE_MAX + 2)) {
            serve_emit(bad_argument(L"a request line is not UTF-8"));
            continue;
        }
        argv[0] = L"neighcheck_agent";
        for (wchar_t *w = wide; *w;) {
            while (*w == L' ' || *w == L'\t')
                *w++ = L'\0';
            if (!*w)
                break;
            if (argc == SERVE_ARGS_MAX)
                break;
            argv[argc++] = w;
            while (*w && *w != L' ' && *w != L'\t')
                w++;
        }
        argv[argc] = NULL;
        if (argc == 1 && !g_request_id[0])
            continue; /* a blank line is no request */
        rc = argc == SERVE_ARGS_MAX ? bad_argument(L"more than %d words", SERVE_ARGS_MAX - 1)
                                    : dispatch(argc, argv);
        serve_emit(rc);
    }
    g_serving = FALSE;
    return 0;
}

/* A crash inside a DLL call must still end in one JSON object. A Wine stub is an
   unimplemented export: the same answer as a missing one, exit 0. Anything else is a real
   crash: reported, exit 1 (the harness's agent error). */
static LONG WINAPI on_unhandled_exception(EXCEPTION_POINTERS *info)
{
    DWORD code = info->ExceptionRecord->ExceptionCode;
    if (g_reply_complete)
        ExitProcess(0); /* the one JSON object is already out */
    g_out_len = 0; /* serve: whatever the verb had printed is replaced by this report */
    if (code == EXCEPTION_WINE_STUB) {
        fputs("{\"status\": null", stdout);
        json_status_space();
        printf(", \"error\": \"not-exported\", \"detail\": "
               "\"iphlpapi.dll's %s is a stub (exception 0x%08lx)\"}\n",
               g_calling, (unsigned long)code);
        serve_emit(0);
        fflush(stdout);
        ExitProcess(0);
    }
    printf("{\"status\": null, \"error\": \"exception\", \"detail\": "
           "\"exception 0x%08lx after looking up %s\"}\n", (unsigned long)code, g_calling);
    serve_emit(EXIT_CRASH);
    fflush(stdout);
    ExitProcess(EXIT_CRASH);
    return EXCEPTION_EXECUTE_HANDLER;
}

int wmain(int argc, wchar_t **argv)
{
    WSADATA wsa;
    int rc;

    /* Before anything can load a DLL on demand (WSAStartup does). */
    restrict_dll_search();
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
