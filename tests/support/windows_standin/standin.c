/*
 * A scripted stand-in for iphlpapi.dll (tests only): the NETIOAPI functions the neighcheck
 * Windows agent calls, answering from a script and recording every call.
 *
 * Wine 8 has no FlushIpNetTable2, CreateIpNetEntry2 or DeleteIpNetEntry2, so the agent's
 * paths for them can only run against something else. This DLL is built with mingw-w64 as
 * iphlpapi.dll, installed into a test prefix's C:\windows\system32 and chosen by Wine's DLL
 * overrides (iphlpapi=n); see tests/support/windows_standin/__init__.py.
 *
 *   NCK_STANDIN_SCRIPT  a file of lines (Windows path; '#' starts a comment):
 *       return FUNCTION CODE [CODE ...]    codes for successive calls; the last one repeats
 *                                          (default 0). Codes decimal or 0x-hex.
 *       neigh FAMILY IFINDEX ADDRHEX LLHEX|- STATE ROUTER UNREACHABLE
 *                                          a GetIpNetTable2 row (address as 8 or 32 hex digits)
 *       if INDEX ALIAS LLHEX|- UP FILTER   a GetIfTable2 row
 *       ipif FAMILY INDEX                  a GetIpInterfaceTable row (returned for its family)
 *       tableonerror FUNCTION              also hand out an (empty) table when FUNCTION fails
 *   NCK_STANDIN_LOG     a file (Windows path) each call appends one JSON line to:
 *       {"fn": NAME, "call": N, "ret": CODE, ...the arguments...}
 *       and, on load, {"fn": "DllMain", "path": "<this DLL's own path>"}.
 *
 * Which functions are exported is decided by the .def file the builder writes (a variant
 * without an export shows the agent's `not-exported` path). Built with -DSTANDIN_POISON, the
 * DLL also writes "<its own path>.loaded" when it is loaded: a DLL planted beside the agent.
 */
#define WIN32_LEAN_AND_MEAN
#define _WIN32_WINNT 0x0600
#include <winsock2.h>
#include <ws2ipdef.h>
#include <windows.h>
#include <iphlpapi.h>
#include <netioapi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROWS 64
#define MAX_CODES 16
#define MAX_FUNCTIONS 16


/* ---- the log --------------------------------------------------------------------------- */

static void log_line(const char *fmt, ...)
{
    wchar_t path[MAX_PATH];
    char line[2048];
    va_list ap;
    HANDLE file;
    DWORD written;
    int n;

    if (!GetEnvironmentVariableW(L"NCK_STANDIN_LOG", path, MAX_PATH))
        return;
    va_start(ap, fmt);
    n = _vsnprintf(line, sizeof line - 2, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = sizeof line - 2;
    line[n++] = '\n';
    file = CreateFileW(path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE, NULL,
                       OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    if (file == INVALID_HANDLE_VALUE)
        return;
    WriteFile(file, line, (DWORD)n, &written, NULL);
    CloseHandle(file);
}

static void hex(char *out, const UCHAR *bytes, ULONG len)
{
    for (ULONG i = 0; i < len; i++)
        sprintf(out + 2 * i, "%02x", bytes[i]);
    out[2 * len] = '\0';
}

/* ---- the script ------------------------------------------------------------------------ */

struct codes {
    char function[64];
    DWORD code[MAX_CODES];
    int count;
    int calls;
    BOOL table_on_error;
};

static struct codes g_codes[MAX_FUNCTIONS];
static int g_ncodes;
static MIB_IPNET_ROW2 g_neigh[MAX_ROWS];
static int g_nneigh;
static MIB_IF_ROW2 g_if[MAX_ROWS];
static int g_nif;
static MIB_IPINTERFACE_ROW g_ipif[MAX_ROWS];
static int g_nipif;
static BOOL g_loaded;

static struct codes *codes_for(const char *function)
{
    for (int i = 0; i < g_ncodes; i++)
        if (!strcmp(g_codes[i].function, function))
            return &g_codes[i];
    if (g_ncodes == MAX_FUNCTIONS)
        return NULL;
    lstrcpynA(g_codes[g_ncodes].function, function, sizeof g_codes[0].function);
    return &g_codes[g_ncodes++];
}

static ULONG unhex(const char *s, UCHAR *out, ULONG max)
{
    ULONG n = 0;
    if (!strcmp(s, "-"))
        return 0;
    while (s[0] && s[1] && n < max) {
        unsigned int byte;
        if (sscanf(s, "%2x", &byte) != 1)
            break;
        out[n++] = (UCHAR)byte;
        s += 2;
    }
    return n;
}

static void parse_line(char *line)
{
    char word[64], a[64], b[64], c[128];
    unsigned long v[6];
    int used;

    if (sscanf(line, "%63s%n", word, &used) != 1 || word[0] == '#')
        return;
    line += used;
    if (!strcmp(word, "return")) {
        struct codes *codes;
        char *token;
        if (sscanf(line, "%63s%n", a, &used) != 1 || !(codes = codes_for(a)))
            return;
        codes->count = 0;
        for (token = strtok(line + used, " \t\r\n"); token && codes->count < MAX_CODES;
             token = strtok(NULL, " \t\r\n"))
            codes->code[codes->count++] = strtoul(token, NULL, 0);
    } else if (!strcmp(word, "tableonerror")) {
        struct codes *codes;
        if (sscanf(line, "%63s", a) == 1 && (codes = codes_for(a)))
            codes->table_on_error = TRUE;
    } else if (!strcmp(word, "neigh") && g_nneigh < MAX_ROWS) {
        MIB_IPNET_ROW2 *row = &g_neigh[g_nneigh];
        if (sscanf(line, "%lu %lu %63s %63s %lu %lu %lu", &v[0], &v[1], a, b, &v[2], &v[3],
                   &v[4]) != 7)
            return;
        memset(row, 0, sizeof *row);
        row->Address.si_family = (ADDRESS_FAMILY)v[0];
        if (strlen(a) == 32)
            unhex(a, row->Address.Ipv6.sin6_addr.s6_addr, 16);
        else
            unhex(a, (UCHAR *)&row->Address.Ipv4.sin_addr, 4);
        row->InterfaceIndex = (NET_IFINDEX)v[1];
        row->InterfaceLuid.Info.NetLuidIndex = v[1];
        row->PhysicalAddressLength = unhex(b, row->PhysicalAddress, IF_MAX_PHYS_ADDRESS_LENGTH);
        row->State = (NL_NEIGHBOR_STATE)v[2];
        row->IsRouter = v[3] != 0;
        row->IsUnreachable = v[4] != 0;
        g_nneigh++;
    } else if (!strcmp(word, "if") && g_nif < MAX_ROWS) {
        MIB_IF_ROW2 *row = &g_if[g_nif];
        if (sscanf(line, "%lu %127s %63s %lu %lu", &v[0], c, b, &v[1], &v[2]) != 5)
            return;
        memset(row, 0, sizeof *row);
        row->InterfaceIndex = (NET_IFINDEX)v[0];
        MultiByteToWideChar(CP_UTF8, 0, c, -1, row->Alias, IF_MAX_STRING_SIZE);
        MultiByteToWideChar(CP_UTF8, 0, c, -1, row->Description, IF_MAX_STRING_SIZE);
        row->PhysicalAddressLength = unhex(b, row->PhysicalAddress, IF_MAX_PHYS_ADDRESS_LENGTH);
        row->OperStatus = v[1] ? IfOperStatusUp : IfOperStatusDown;
        row->Type = IF_TYPE_ETHERNET_CSMACD;
        row->InterfaceAndOperStatusFlags.FilterInterface = v[2] != 0;
        g_nif++;
    } else if (!strcmp(word, "ipif") && g_nipif < MAX_ROWS) {
        MIB_IPINTERFACE_ROW *row = &g_ipif[g_nipif];
        if (sscanf(line, "%lu %lu", &v[0], &v[1]) != 2)
            return;
        memset(row, 0, sizeof *row);
        row->Family = (ADDRESS_FAMILY)v[0];
        row->InterfaceIndex = (NET_IFINDEX)v[1];
        g_nipif++;
    }
}

static void load_script(void)
{
    wchar_t path[MAX_PATH];
    HANDLE file;
    DWORD size, got = 0;
    char *text, *line, *next;

    if (g_loaded)
        return;
    g_loaded = TRUE;
    if (!GetEnvironmentVariableW(L"NCK_STANDIN_SCRIPT", path, MAX_PATH))
        return;
    file = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ, NULL, OPEN_EXISTING, 0, NULL);
    if (file == INVALID_HANDLE_VALUE)
        return;
    size = GetFileSize(file, NULL);
    text = HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, size + 1);
    if (text && ReadFile(file, text, size, &got, NULL)) {
        text[got] = '\0';
        for (line = text; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = '\0';
            parse_line(line);
        }
    }
    CloseHandle(file);
    if (text)
        HeapFree(GetProcessHeap(), 0, text);
}

/* The code this call of FUNCTION returns, and the call's number (1, 2, ...). */
static DWORD next_code(const char *function, int *call)
{
    struct codes *codes;
    load_script();
    codes = codes_for(function);
    if (!codes) {
        *call = 0;
        return 0;
    }
    *call = ++codes->calls;
    if (codes->count == 0)
        return NO_ERROR;
    return codes->code[*call <= codes->count ? *call - 1 : codes->count - 1];
}

static BOOL table_on_error(const char *function)
{
    struct codes *codes = codes_for(function);
    return codes && codes->table_on_error;
}

static void *alloc_table(SIZE_T header, SIZE_T row, ULONG rows)
{
    return HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, header + row * (rows ? rows : 1));
}

/* ---- the functions ---------------------------------------------------------------------- */

DWORD WINAPI standin_FlushIpNetTable2(ADDRESS_FAMILY family, NET_IFINDEX ifindex)
{
    int call;
    DWORD ret = next_code("FlushIpNetTable2", &call);
    log_line("{\"fn\": \"FlushIpNetTable2\", \"call\": %d, \"ret\": %lu, \"family\": %u, "
             "\"ifindex\": %lu}", call, (unsigned long)ret, (unsigned)family,
             (unsigned long)ifindex);
    return ret;
}

static void log_row(const char *function, int call, DWORD ret, const MIB_IPNET_ROW2 *row)
{
    char address[33], sockaddr[2 * sizeof(SOCKADDR_INET) + 1];
    char lladdr[2 * IF_MAX_PHYS_ADDRESS_LENGTH + 1];
    ULONG lllen = row->PhysicalAddressLength;
    if (row->Address.si_family == AF_INET6)
        hex(address, row->Address.Ipv6.sin6_addr.s6_addr, 16);
    else
        hex(address, (const UCHAR *)&row->Address.Ipv4.sin_addr, 4);
    /* The whole SOCKADDR_INET too: tests check that nothing else in it was left set. */
    hex(sockaddr, (const UCHAR *)&row->Address, sizeof row->Address);
    hex(lladdr, row->PhysicalAddress, lllen <= IF_MAX_PHYS_ADDRESS_LENGTH ? lllen : 0);
    log_line("{\"fn\": \"%s\", \"call\": %d, \"ret\": %lu, \"si_family\": %u, "
             "\"address\": \"%s\", \"sockaddr\": \"%s\", \"ifindex\": %lu, \"luid\": %llu, "
             "\"lladdr\": \"%s\", \"lladdr_len\": %lu, \"state\": %d, \"router\": %d, "
             "\"unreachable\": %d}",
             function, call, (unsigned long)ret, (unsigned)row->Address.si_family, address,
             sockaddr, (unsigned long)row->InterfaceIndex,
             (unsigned long long)row->InterfaceLuid.Value, lladdr, (unsigned long)lllen,
             (int)row->State, (int)row->IsRouter, (int)row->IsUnreachable);
}

DWORD WINAPI standin_CreateIpNetEntry2(const MIB_IPNET_ROW2 *row)
{
    int call;
    DWORD ret = next_code("CreateIpNetEntry2", &call);
    log_row("CreateIpNetEntry2", call, ret, row);
    return ret;
}

DWORD WINAPI standin_DeleteIpNetEntry2(const MIB_IPNET_ROW2 *row)
{
    int call;
    DWORD ret = next_code("DeleteIpNetEntry2", &call);
    log_row("DeleteIpNetEntry2", call, ret, row);
    return ret;
}

DWORD WINAPI standin_SetIpNetEntry2(MIB_IPNET_ROW2 *row)
{
    int call;
    DWORD ret = next_code("SetIpNetEntry2", &call);
    log_row("SetIpNetEntry2", call, ret, row);
    return ret;
}

DWORD WINAPI standin_GetIpNetTable2(ADDRESS_FAMILY family, PMIB_IPNET_TABLE2 *out)
{
    int call;
    DWORD ret = next_code("GetIpNetTable2", &call);
    PMIB_IPNET_TABLE2 table = NULL;
    if (ret == NO_ERROR || table_on_error("GetIpNetTable2")) {
        ULONG n = ret == NO_ERROR ? (ULONG)g_nneigh : 0;
        table = alloc_table(offsetof(MIB_IPNET_TABLE2, Table), sizeof(MIB_IPNET_ROW2), n);
        table->NumEntries = n;
        memcpy(table->Table, g_neigh, n * sizeof(MIB_IPNET_ROW2));
    }
    *out = table;
    log_line("{\"fn\": \"GetIpNetTable2\", \"call\": %d, \"ret\": %lu, \"family\": %u, "
             "\"table\": \"%p\"}", call, (unsigned long)ret, (unsigned)family, (void *)table);
    return ret;
}

DWORD WINAPI standin_GetIfTable2(PMIB_IF_TABLE2 *out)
{
    int call;
    DWORD ret = next_code("GetIfTable2", &call);
    PMIB_IF_TABLE2 table = NULL;
    if (ret == NO_ERROR) {
        table = alloc_table(offsetof(MIB_IF_TABLE2, Table), sizeof(MIB_IF_ROW2), g_nif);
        table->NumEntries = g_nif;
        memcpy(table->Table, g_if, g_nif * sizeof(MIB_IF_ROW2));
    }
    *out = table;
    log_line("{\"fn\": \"GetIfTable2\", \"call\": %d, \"ret\": %lu, \"table\": \"%p\"}", call,
             (unsigned long)ret, (void *)table);
    return ret;
}

DWORD WINAPI standin_GetIpInterfaceTable(ADDRESS_FAMILY family, PMIB_IPINTERFACE_TABLE *out)
{
    int call;
    DWORD ret = next_code("GetIpInterfaceTable", &call);
    PMIB_IPINTERFACE_TABLE table = NULL;
    if (ret == NO_ERROR) {
        table = alloc_table(offsetof(MIB_IPINTERFACE_TABLE, Table), sizeof(MIB_IPINTERFACE_ROW),
                            g_nipif);
        for (int i = 0; i < g_nipif; i++)
            if (family == AF_UNSPEC || g_ipif[i].Family == family)
                table->Table[table->NumEntries++] = g_ipif[i];
    }
    *out = table;
    log_line("{\"fn\": \"GetIpInterfaceTable\", \"call\": %d, \"ret\": %lu, \"family\": %u, "
             "\"table\": \"%p\"}", call, (unsigned long)ret, (unsigned)family, (void *)table);
    return ret;
}

VOID WINAPI standin_FreeMibTable(PVOID table)
{
    log_line("{\"fn\": \"FreeMibTable\", \"table\": \"%p\"}", table);
    if (table)
        HeapFree(GetProcessHeap(), 0, table);
}

/* ---- loading ---------------------------------------------------------------------------- */

static void json_path(char *out, size_t size, const wchar_t *path)
{
    size_t n = 0;
    for (; *path && n + 7 < size; path++) {
        if (*path == L'\\' || *path == L'"') {
            out[n++] = '\\';
            out[n++] = (char)*path;
        } else if (*path < 0x20 || *path > 0x7e) {
            n += sprintf(out + n, "\\u%04x", (unsigned)*path);
        } else {
            out[n++] = (char)*path;
        }
    }
    out[n] = '\0';
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)reserved;
    if (reason == DLL_PROCESS_ATTACH) {
        wchar_t path[MAX_PATH];
        char shown[4 * MAX_PATH];
        DisableThreadLibraryCalls(instance);
        GetModuleFileNameW(instance, path, MAX_PATH);
        json_path(shown, sizeof shown, path);
#ifdef STANDIN_POISON
        log_line("{\"fn\": \"DllMain\", \"path\": \"%s\", \"poison\": true}", shown);
        {
            wchar_t marker[MAX_PATH + 8];
            HANDLE file;
            lstrcpynW(marker, path, MAX_PATH);
            lstrcatW(marker, L".loaded");
            file = CreateFileW(marker, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, 0, NULL);
            if (file != INVALID_HANDLE_VALUE)
                CloseHandle(file);
        }
#else
        log_line("{\"fn\": \"DllMain\", \"path\": \"%s\"}", shown);
#endif
    }
    return TRUE;
}
