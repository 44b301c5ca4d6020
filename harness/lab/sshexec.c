/*
 * nck-sshexec: runs one Windows command line the way Windows OpenSSH runs an exec request
 * when cmd.exe is its DefaultShell: CreateProcess of
 *
 *     "C:\windows\system32\cmd.exe" /c "<command line>"
 *
 * with the standard handles inherited, then exits with the command's exit code.
 *
 * The embedded lab's Wine device has a Linux sshd, so a POSIX shell receives the command.
 * `wine nck-sshexec '<command line>'` hands the command line over unchanged: Wine builds the
 * Windows command line from the Unix argument with the MSVC quoting rules, which the C
 * runtime's argv parsing undoes exactly. (`wine cmd /c '<command line>'` would not do: cmd.exe
 * reads its own command line raw, and Wine's backslash-escaped quotes reach it as text.)
 * So the harness's cmd.exe quoting, and the agent's `lock` verb, are parsed by a real
 * cmd.exe (Wine's) as on a Windows host.
 *
 * Build: x86_64-w64-mingw32-gcc -municode (harness/lab/sshexec.py). Installed by the lab into
 * the device's WINEPREFIX as C:\windows\system32\nck-sshexec.exe.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

#define EXIT_CANNOT_RUN 126
#define EXIT_USAGE 127

static HANDLE inherited(DWORD which)
{
    HANDLE h = GetStdHandle(which);
    if (h != NULL && h != INVALID_HANDLE_VALUE)
        SetHandleInformation(h, HANDLE_FLAG_INHERIT, HANDLE_FLAG_INHERIT);
    return h;
}

int wmain(int argc, wchar_t **argv)
{
    wchar_t shell[MAX_PATH + 16];
    wchar_t *line;
    size_t len;
    UINT n;
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    DWORD code = EXIT_CANNOT_RUN;

    if (argc != 2) {
        fputs("usage: nck-sshexec COMMAND-LINE (one argument: the command cmd.exe runs)\n", stderr);
        return EXIT_USAGE;
    }
    n = GetSystemDirectoryW(shell, MAX_PATH);
    if (n == 0 || n >= MAX_PATH) {
        fputs("nck-sshexec: cannot find the system directory\n", stderr);
        return EXIT_CANNOT_RUN;
    }
    wcscat(shell, L"\\cmd.exe");
    len = wcslen(shell) + wcslen(argv[1]) + 16;
    line = malloc(len * sizeof *line);
    if (line == NULL)
        return EXIT_CANNOT_RUN;
    /* Windows OpenSSH: sprintf("%s %s \"%s\"", shell, "/c", command), shell in quotes. */
    swprintf(line, len, L"\"%ls\" /c \"%ls\"", shell, argv[1]);

    ZeroMemory(&si, sizeof si);
    si.cb = sizeof si;
    si.dwFlags = STARTF_USESTDHANDLES;
    si.hStdInput = inherited(STD_INPUT_HANDLE);
    si.hStdOutput = inherited(STD_OUTPUT_HANDLE);
    si.hStdError = inherited(STD_ERROR_HANDLE);
    if (!CreateProcessW(shell, line, NULL, NULL, TRUE, 0, NULL, NULL, &si, &pi)) {
        fprintf(stderr, "nck-sshexec: cannot start cmd.exe: error %lu\n", GetLastError());
        return EXIT_CANNOT_RUN;
    }
    CloseHandle(pi.hThread);
    WaitForSingleObject(pi.hProcess, INFINITE);
    GetExitCodeProcess(pi.hProcess, &code);
    CloseHandle(pi.hProcess);
    return (int)code;
}
