"""Namespace plumbing for the tests' own labs: commands with a timeout, `ip -j` in a
namespace, removal of a namespace by name (what runs in it by pid), link carrier."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

TIMEOUT = 30.0


def run(*argv: str, timeout: float = TIMEOUT, check: bool = True, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A command's result (text); with check, AssertionError naming it and its stderr on failure."""
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(argv[:8])}` exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


def ip_json(ns: str | None, *args: str) -> list[dict]:
    """`ip -j -n NS ARGS` parsed (an empty answer is []); ns None: the host's namespace."""
    out = run("ip", "-j", *(["-n", ns] if ns else []), *args).stdout
    return json.loads(out) if out.strip() else []


def links_by_name(ns: str) -> dict[str, int]:
    return {link["ifname"]: link["ifindex"] for link in ip_json(ns, "link", "show")}


def namespaces() -> set[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_pids(ns: str) -> list[int]:
    """What runs in the namespace, by pid ([] when it does not exist)."""
    out = run("ip", "netns", "pids", ns, check=False).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def remove_netns(ns: str, *links: str) -> None:
    """Delete `links` (host side; the peer goes with it), end what runs in `ns` (SIGKILL, by
    pid), delete `ns`. Whatever of it does not exist is skipped."""
    for link in links:
        run("ip", "link", "del", link, check=False)
    if Path("/run/netns", ns).exists():
        for pid in netns_pids(ns):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run("ip", "netns", "del", ns, check=False)


def carrier(ifname: str) -> bool:
    try:
        return Path(f"/sys/class/net/{ifname}/carrier").read_text().strip() == "1"
    except OSError:
        return False
