"""The one privilege a harness needs against a real lab: raw sockets (CAP_NET_RAW).

Seeding and the responder send and receive test frames on raw AF_PACKET sockets; nothing else
the harness does against a real lab needs root (SSH, the agents, the reports). The embedded lab
needs more (namespaces, veths, sysctls) and says so itself. Asked by `neighcheck doctor` (for
each harness interface) and before a run starts, so a harness without the capability stops at
once with the fix instead of failing every case at its first seed.
"""

from __future__ import annotations

import errno
import os
import socket
import sys

from harness.errors import UsageError


def grant_hint() -> str:
    """How to give this harness the capability: root, or a file capability on the interpreter
    (the venv's python is a symlink; the capability goes on the file it points at)."""
    python = os.path.realpath(sys.executable)
    return (f"run as root, or grant it to the interpreter: sudo setcap cap_net_raw+ep {python} "
            "(then every script that interpreter runs has it; a venv's python links to it)")


def raw_socket_problem(ifname: str | None = None) -> str | None:
    """None when this process can open a raw AF_PACKET socket (bound to `ifname` if given),
    else what stops it and the fix."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        return f"no CAP_NET_RAW: raw sockets for test traffic are refused; {grant_hint()}"
    with sock:
        if ifname is not None:
            try:
                sock.bind((ifname, 0))
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    return f"interface {ifname!r} does not exist on this host"
                return f"cannot bind a raw socket to {ifname!r}: {exc.strerror or exc}"
    return None


def require_raw_sockets(devices) -> None:
    """Raise UsageError before a run starts when test frames could not be sent."""
    problem = raw_socket_problem()
    if problem is not None:
        links = " ".join(link.harness_if for d in devices for link in d.links)
        raise UsageError(f"cannot send test traffic on the harness interfaces ({links}): {problem}")
