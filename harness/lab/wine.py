"""Run Windows programs under Wine inside a network namespace (the `win-wine` lab device).

Wine answers network queries (GetIpNetTable2 and friends) from its own service processes
(services.exe, winedevice.exe running nsiproxy.sys), which are started by the first Wine
process of a wineserver and read /proc/net/* in *their* namespace. So:

- every namespace gets its own WINEPREFIX: Wine keys its server by the prefix directory, and
  a client in namespace B would otherwise join a server whose services live in namespace A
  (and silently report A's neighbor table);
- the server is started inside the namespace and kept persistent (`wineserver -p`), so the
  services stay up: a call costs about 40 ms instead of about 0.5 s for a cold start.

`prepare_prefix` builds a prefix once (about 0.7 GB); `clone_prefix` makes another from it
with hard links in well under a second, which is how a lab with several Wine devices avoids
paying 0.7 GB and a `wineboot` per namespace.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import DeviceError, UsageError

WINE = "wine"
WINESERVER = "wineserver"
# Debian's `wineserver` is a wrapper script that execs this binary; starting the binary
# directly keeps the argv[0] we give it.
DEBIAN_WINESERVER_BINARY = Path("/usr/lib/wine/wineserver64")
APT_PACKAGES = ("wine", "wine64")
# Skip the Mono/Gecko installer prompts and desktop-menu integration: nothing may wait for a
# user, and nothing may be written outside the prefix.
DLL_OVERRIDES = "mscoree,mshtml=;winemenubuilder.exe=d"
READY_MARKER = ".neighcheck-prefix-ready"
# Debian's wineserver makes its socket directory with mkdtemp under $TMPDIR; keeping that
# inside the prefix means deleting the prefix leaves nothing behind in /tmp.
SERVER_TMPDIR = ".wineserver-tmp"
# Shown in `ps` as the server's argv[0], so a leftover server is recognisable as ours.
SERVER_ARGV0 = "nckW-wineserver"
WARMUP_TIMEOUT_S = 60.0
PREFIX_TIMEOUT_S = 180.0
SERVER_START_TIMEOUT_S = 10.0
SERVER_STOP_TIMEOUT_S = 10.0


def require_wine() -> None:
    """Raise UsageError (naming the apt packages) when wine or wineserver is not installed."""
    missing = [tool for tool in (WINE, WINESERVER) if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"{' and '.join(missing)} not found: install the Debian packages "
                         f"{' '.join(APT_PACKAGES)} (apt-get install -y {' '.join(APT_PACKAGES)})")


def wine_env(prefix_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for any wine/wineserver call on this prefix: quiet and headless."""
    env = dict(os.environ if base is None else base)
    env.pop("DISPLAY", None)  # no X: console programs only, never a dialog box
    env.pop("WAYLAND_DISPLAY", None)
    prefix_dir = Path(prefix_dir).resolve()
    env.update(
        WINEPREFIX=str(prefix_dir),
        TMPDIR=str(prefix_dir / SERVER_TMPDIR),
        WINEARCH="win64",
        WINEDEBUG="-all",  # also silences Debian's "wine32 is missing" hint
        WINEDLLOVERRIDES=DLL_OVERRIDES,
        # Wine reads Unix arguments in the locale's code set: UTF-8, as Windows OpenSSH reads
        # an exec request (an SSH session has no LANG of its own)
        LC_ALL="C.UTF-8",
    )
    return env


@contextmanager
def _prefix_lock(prefix_dir: Path) -> Iterator[None]:
    """Serialise preparation of one prefix across processes (pytest-xdist workers)."""
    lock_path = prefix_dir.parent / f".{prefix_dir.name}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(argv: list[str], env: dict[str, str], timeout: float, what: str,
         check: bool = True) -> None:
    # stdout to /dev/null and stderr to a file, never pipes: services started by this
    # process inherit its handles and would keep a pipe open after it exits.
    with tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=stderr, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what}: `{' '.join(argv)}` did not finish within "
                              f"{timeout:g} s") from None
        if check and proc.returncode != 0:
            stderr.seek(0)
            raise DeviceError(f"{what}: `{' '.join(argv)}` exited {proc.returncode}: "
                              f"{stderr.read().decode(errors='replace').strip()[-500:]}")


def prefix_ready(prefix_dir: Path) -> bool:
    return (Path(prefix_dir) / READY_MARKER).is_file()


def prepare_prefix(prefix_dir: Path, timeout: float = PREFIX_TIMEOUT_S) -> None:
    """Create a 64-bit WINEPREFIX at prefix_dir unless it is already complete (idempotent).

    Runs `wineboot --init` headless, then ends that prefix's transient wineserver, so the
    next server for the prefix can start in a namespace. `wineserver -k` rather than waiting
    for the server to go idle: the registry is saved all the same, and it saves ~5 s.
    """
    require_wine()
    prefix_dir = Path(prefix_dir).resolve()
    if prefix_ready(prefix_dir):
        return
    prefix_dir.parent.mkdir(parents=True, exist_ok=True)
    with _prefix_lock(prefix_dir):
        if prefix_ready(prefix_dir):  # another process finished it while we waited
            return
        (prefix_dir / SERVER_TMPDIR).mkdir(parents=True, exist_ok=True)
        env = wine_env(prefix_dir)
        deadline = time.monotonic() + timeout
        _run([WINE, "wineboot", "--init"], env, timeout, f"creating WINEPREFIX {prefix_dir}")
        # -k exits 1 when the server is already gone; -w then confirms it is.
        _run([WINESERVER, "-k"], env, max(1.0, deadline - time.monotonic()),
             f"stopping the wineserver of {prefix_dir}", check=False)
        _run([WINESERVER, "-w"], env, max(1.0, deadline - time.monotonic()),
             f"waiting for the wineserver of {prefix_dir} to exit")
        if not (prefix_dir / "system.reg").is_file():
            raise DeviceError(f"wineboot finished but {prefix_dir} has no system.reg")
        (prefix_dir / READY_MARKER).write_text("created by harness.lab.wine.prepare_prefix\n")


def clone_prefix(template_dir: Path, prefix_dir: Path) -> None:
    """Make prefix_dir a copy of a prepared prefix, hard-linking everything but the registry.

    Wine never rewrites the DLLs and programs of a prefix in place (they are what makes it
    0.7 GB); the registry files are rewritten by each server, so those are real copies.
    Idempotent: does nothing when prefix_dir is already ready.
    """
    template_dir, prefix_dir = Path(template_dir).resolve(), Path(prefix_dir).resolve()
    if not prefix_ready(template_dir):
        raise UsageError(f"{template_dir} is not a prepared WINEPREFIX (run prepare_prefix first)")
    if prefix_ready(prefix_dir):
        return
    prefix_dir.parent.mkdir(parents=True, exist_ok=True)
    with _prefix_lock(prefix_dir):
        if prefix_ready(prefix_dir):
            return
        shutil.rmtree(prefix_dir, ignore_errors=True)  # a half-made clone from a crash

        def link_or_copy(src: str, dst: str) -> None:
            if src.endswith(".reg") or os.path.basename(src) == READY_MARKER:
                shutil.copy2(src, dst)
                return
            try:
                os.link(src, dst)
            except OSError:  # another file system (EXDEV) or no hard links: a real copy
                shutil.copy2(src, dst)

        # Skip the "wineserver" file and the server's temporary directory: Debian's wine
        # records the prefix's server directory there, and a clone must get its own.
        shutil.copytree(template_dir, prefix_dir, symlinks=True, copy_function=link_or_copy,
                        ignore=lambda d, names: (["wineserver", SERVER_TMPDIR]
                                                 if Path(d) == template_dir else []))
        (prefix_dir / SERVER_TMPDIR).mkdir()
        (prefix_dir / READY_MARKER).write_text(f"cloned from {template_dir}\n")


def _server_socket(pid: int) -> Path:
    # wineserver chdirs into its server directory (its location differs between builds:
    # /tmp/.wine-UID/server-DEV-INO upstream, a random /tmp/wine-XXXXXX/ on Debian).
    return Path(f"/proc/{pid}/cwd/socket")


def start_wineserver(netns: str, prefix_dir: Path,
                     timeout: float = SERVER_START_TIMEOUT_S) -> int:
    """Start a persistent wineserver for prefix_dir inside netns; return its pid.

    A first Wine process is run in netns before returning, so the prefix's services (which
    answer the network queries) run in netns too and every later call is warm.
    Only one server runs per prefix: if one is already running for this prefix (maybe in
    another namespace) the new one exits and this raises DeviceError rather than letting
    calls be answered from the wrong namespace. Stop it with `stop_wineserver(pid, prefix)`.
    """
    require_wine()
    prefix_dir = Path(prefix_dir).resolve()
    if not prefix_ready(prefix_dir):
        raise UsageError(f"{prefix_dir} is not a prepared WINEPREFIX (run prepare_prefix first)")
    (prefix_dir / SERVER_TMPDIR).mkdir(exist_ok=True)  # prefixes made before it existed
    server = (str(DEBIAN_WINESERVER_BINARY) if os.access(DEBIAN_WINESERVER_BINARY, os.X_OK)
              else shutil.which(WINESERVER))
    # bash's `exec -a` names the process; -f keeps it in the foreground so the pid we hold is
    # the server's own (`ip netns exec` and `exec` replace the process, no fork).
    # stderr goes to an unlinked file, not a pipe: a pipe we stop reading would kill a
    # long-lived server with SIGPIPE the first time it complains.
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, "bash", "-c",
             f'exec -a {SERVER_ARGV0} "$0" -f -p', server],
            env=wine_env(prefix_dir), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=stderr, start_new_session=True)
        ready = _wait_server_ready(proc, timeout)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace").strip()
    if not ready:
        if proc.returncode is None:
            _kill_pid(proc.pid)
            proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
            raise DeviceError(f"wineserver for {prefix_dir} in netns {netns} did not open its "
                              f"socket within {timeout:g} s{': ' + err if err else ''}")
        hint = (" (a wineserver for this prefix is already running, maybe in another "
                "namespace)" if proc.returncode == 2 else "")
        raise DeviceError(f"wineserver for {prefix_dir} in netns {netns} exited "
                          f"{proc.returncode}{hint}{': ' + err if err else ''}")
    try:
        _boot_services(netns, prefix_dir)
    except DeviceError:
        stop_wineserver(proc.pid, prefix_dir)
        raise
    return proc.pid


def _wait_server_ready(proc: subprocess.Popen, timeout: float) -> bool:
    """True once the server listens; False if it exited or the timeout passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if _server_socket(proc.pid).exists():
            return True
        time.sleep(0.02)
    return False


def _boot_services(netns: str, prefix_dir: Path) -> None:
    """Run a first, trivial Wine process in netns, so the prefix's services start there.

    Its standard handles are /dev/null on purpose: the first process of a server starts
    services.exe and winedevice.exe, which inherit them and live as long as the server. Had
    the first process been an agent call over SSH, those services would hold the SSH channel's
    pipes open and the call would never end.
    """
    argv = ["ip", "netns", "exec", netns, WINE, "cmd.exe", "/c", "exit"]
    try:
        proc = subprocess.run(argv, env=wine_env(prefix_dir), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=WARMUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"the first Wine process in netns {netns} did not finish within "
                          f"{WARMUP_TIMEOUT_S:g} s") from None
    if proc.returncode != 0:
        raise DeviceError(f"the first Wine process in netns {netns} exited {proc.returncode}")


def _kill_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            # Reap it if it is our child; otherwise just watch /proc.
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return True
        time.sleep(0.02)
    return False


def stop_wineserver(pid: int, prefix_dir: Path, timeout: float = SERVER_STOP_TIMEOUT_S) -> None:
    """Stop the wineserver `pid` of prefix_dir and every Wine process attached to it.

    `wineserver -k` (talking to that prefix's server) ends its Windows processes; the server
    pid is then signalled directly, so a server that ignores -k still goes.
    """
    prefix_dir = Path(prefix_dir).resolve()
    if Path(f"/proc/{pid}").exists():
        try:
            subprocess.run([WINESERVER, "-k"], env=wine_env(prefix_dir), capture_output=True,
                           timeout=timeout)
        except (subprocess.TimeoutExpired, FileNotFoundError):
            pass
    _kill_pid(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        _kill_pid(pid, signal.SIGKILL)
        _wait_gone(pid, 2.0)


def agent_command(prefix_dir: Path, exe: Path) -> list[str]:
    """A self-contained argv prefix (`env ... wine EXE`) for running a Windows agent where
    the environment is not ours, e.g. over SSH in the namespace (a device's agent.command).
    The wineserver must already run there (start_wineserver), see _boot_services for why."""
    env = wine_env(prefix_dir, base={})
    return ["env", "-u", "DISPLAY", "-u", "WAYLAND_DISPLAY",
            *(f"{key}={value}" for key, value in sorted(env.items())), WINE, str(exe)]


def wine_argv(exe: Path, *args: str | int) -> list[str]:
    """The command that runs a Windows program (env from wine_env)."""
    return [WINE, str(exe), *map(str, args)]


def run_in_netns(netns: str, prefix_dir: Path, exe: Path, *args: str | int,
                 timeout: float = 30.0) -> subprocess.CompletedProcess:
    """Run `wine exe args` inside netns with this prefix's environment (bytes out)."""
    try:
        return subprocess.run(["ip", "netns", "exec", netns, *wine_argv(exe, *args)],
                              env=wine_env(prefix_dir), capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"`wine {exe.name} {' '.join(map(str, args))}` in netns {netns} did "
                          f"not finish within {timeout:g} s") from None
