"""The inventory (devices.toml): parsed and validated before anything connects.

Every problem is a UsageError with one message in the form
`<file>: device '<name>': <key>: <problem>. <fix>` that names the file, the device, the key
and what to do about it. The inventory is hostile input: nothing from it reaches a shell
unquoted, and names that end up on a command line, in a file name or in an sshd config
(interfaces, users, device names, the lab's state directory) are also restricted to safe
characters here, as a second line of defence behind shlex.quote and argv lists. Values that
may be secrets are never echoed back.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import ipaddress
import os
import re
import shlex
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

LAB_PREFIX = "nck"
HOST_KEY_POLICIES = ("strict", "trust-on-first-use")
MAX_INVENTORY_BYTES = 1 << 20  # a real inventory is a few KiB; anything near this is the wrong file
LAB_MGMT_DEVICE_IF = "eth0"  # the lab's management link inside each device namespace
LAB_STATE_MARKERS = ("state.json", "id_ed25519")  # files that show a directory is a lab state dir
ADMIN_USERS = ("root", "administrator")
BECOME_METHODS = ("sudo",)  # [device.ssh] become: how an account that is not root gets root
LAB_SUDO_USER = "nckadmin"  # the lab's sudo account on a device whose root may not log in


@dataclass(frozen=True)
class _Rule:
    """A pattern for a name, and what it allows said in words (for the message)."""

    pattern: re.Pattern
    words: str

    def ok(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None


DEVICE_NAME = _Rule(re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}"),
                    "1-32 letters, digits, '_', '.' or '-', starting with a letter or digit "
                    "(it names files, and the lab's namespace)")
# IFNAMSIZ-1; no leading '.' or '-' so it is never '.', '..' or an option to `ip`.
LINUX_IFNAME = _Rule(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}"),
                     "1-15 letters, digits, '_', '.' or '-', not starting with '.' or '-' "
                     "(a Linux interface name: no spaces, '/', ':' or shell characters)")
# Letters and digits of any script: Windows shows localized adapter names ("Подключение по
# локальной сети", "イーサネット 2"). The name never reaches a command line (the agent takes
# the ifindex); it is matched against the agent's `interfaces` without case, as Windows does.
# Combining marks, and the Indic and Thai blocks (whose vowel signs are marks, not letters):
_MARKS = "\u0300-\u036f\u0900-\u0dff\u0e00-\u0e7f\u1ab0-\u1aff\u20d0-\u20ff\ufe20-\ufe2f"
WINDOWS_IFNAME = _Rule(re.compile(rf"\w(?:[\w{_MARKS} .()#-]{{0,126}}[\w{_MARKS}.()#-])?"),
                       "1-128 letters (of any script), digits, spaces, '_', '.', '-', '(', ')' or '#', "
                       "starting with a letter, digit or '_' and not ending in a space (the name "
                       "Windows shows)")
USER_NAME = _Rule(re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}"),
                  "1-32 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
ENV_NAME = _Rule(re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}"),
                 "the NAME of an environment variable (letters, digits and '_', not starting "
                 "with a digit), e.g. NCK_PASSWORD")
UPLOAD_DIR = _Rule(re.compile(r"[A-Za-z0-9_.:\\/ -]{1,200}"),
                   "a Windows directory of letters, digits, spaces, '_', '.', '-', ':', '\\' or "
                   "'/', e.g. C:\\neighcheck")
HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# labgrid names: places and resources travel to the coordinator and appear in messages.
LABGRID_NAME = _Rule(re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}"),
                     "1-64 letters, digits, '_', '.', ':' or '-', starting with a letter or digit "
                     "(a labgrid place or resource name)")
# The lab passes paths below its state directory to `sh -c` and writes them into sshd_config.
LAB_PATH = _Rule(re.compile(r"[A-Za-z0-9_./+@,-]{1,200}"),
                 "letters, digits and '_', '.', '/', '+', '@', ',' or '-' (no spaces, quotes or "
                 "other shell characters)")

_TOML_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
              list: "an array", dict: "a table"}


@dataclass(frozen=True)
class Credentials:
    user: str | None  # None only for a labgrid device: the place's NetworkService gives it
    key_file: Path | None = None
    use_agent: bool = False
    password_env: str | None = None  # the name of an environment variable, never the secret
    passphrase_env: str | None = None


@dataclass(frozen=True)
class SshConfig:
    host: str | None  # None only for a labgrid device: the place's NetworkService gives it
    port: int
    login: Credentials
    known_hosts: Path
    host_key_policy: str
    connect_timeout: float
    command_timeout: float
    keepalive: int
    become: str | None = None  # "sudo": every privileged command runs through `sudo -n`


@dataclass(frozen=True)
class TestLink:
    """One test link: a device interface wired to a harness interface."""

    __test__ = False  # not a pytest test class, whatever its name says

    device_if: str
    harness_if: str
    device_v4: ipaddress.IPv4Interface | None
    device_v6: ipaddress.IPv6Interface | None
    harness_v4: ipaddress.IPv4Interface | None
    harness_v6: ipaddress.IPv6Interface | None
    # The link's own seed pools (see _seed_pools); empty and None: the default pools.
    seed_v4: tuple[ipaddress.IPv4Network, ...] = ()
    seed_v6: tuple[ipaddress.IPv6Network, ...] = ()
    seed_from: str | None = None  # "subnet": seed from the link's own subnets


@dataclass(frozen=True)
class AgentConfig:
    command: tuple[str, ...] = ()  # a vendor's own agent; empty: the built-in one
    # Windows behind a POSIX transport (the Wine lab device): the POSIX command that runs a
    # Windows command line, given as its last word, as Windows OpenSSH would (dialect.py)
    launcher: tuple[str, ...] = ()
    upload_dir: str | None = None  # Windows: where the built-in agent is uploaded


@dataclass(frozen=True)
class LabConfig:
    """How the embedded lab builds this device (only for lab = true)."""

    mgmt_harness_if: str
    mgmt_harness_addr: ipaddress.IPv4Interface
    ipv6: bool
    bystanders: int = 0  # hosts sharing each test link's segment (a bridge in between)
    userland: str = "full"  # "busybox": the device's shell, ip and awk are busybox applets
    root_login: bool = True  # false: root may not log in; the lab's sudo account does


@dataclass(frozen=True)
class LabgridConfig:
    """A device shared through a labgrid coordinator: reserved and acquired as `place` for a
    run (harness/places.py). The SSH settings the inventory leaves out (`from_place`: host,
    user, port) come from the place's NetworkService resource (`resource`: its name, needed
    only when the place has several)."""

    place: str
    resource: str | None
    from_place: frozenset[str]


@dataclass(frozen=True)
class Device:
    name: str
    os: str
    ssh: SshConfig
    links: tuple[TestLink, ...]
    agent: AgentConfig
    unprivileged: Credentials | None
    capabilities: dict[str, Any]
    lab: LabConfig | None
    labgrid: LabgridConfig | None = None

    @property
    def netns(self) -> str:
        return f"{LAB_PREFIX}-{self.name}"


@dataclass(frozen=True)
class Inventory:
    path: Path
    devices: tuple[Device, ...]
    lab_state_dir: Path
    raw_sha256: str = field(default="")

    def device(self, name: str) -> Device:
        for device in self.devices:
            if device.name == name:
                return device
        known = ", ".join(d.name for d in self.devices) or "none"
        raise UsageError(f"{self.path}: no device named {_shown(name)} (devices: {known}). "
                         "Pass one of these with --device, or add the device to the inventory")

    def select(self, names: list[str] | None) -> tuple[Device, ...]:
        if not names:
            return self.devices
        return tuple(self.device(n) for n in names)

    @property
    def test_interfaces(self) -> frozenset[str]:
        """Every harness-side test interface: the only ones that may carry test traffic."""
        return frozenset(link.harness_if for d in self.devices for link in d.links)

    @property
    def lab_devices(self) -> tuple[Device, ...]:
        return tuple(d for d in self.devices if d.lab is not None)


# --- message helpers -------------------------------------------------------------------------
def _shown(value: Any, limit: int = 60) -> str:
    """A value as it may appear in a message: repr (so control characters show), shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _key_text(key: str) -> str:
    """A TOML key for a message; odd keys (quoted, with blanks or control characters) in repr."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", key) else _shown(key)


def _describe(value: Any) -> str:
    """What a TOML value is, for 'must be X, got Y' messages."""
    if isinstance(value, bool):  # before int: TOML booleans are ints in Python
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the {'integer' if isinstance(value, int) else 'number'} {value}"
    if isinstance(value, str):
        return f"the string {_shown(value)}"
    if isinstance(value, (list, dict)):
        return _TOML_KIND[type(value)]
    return f"a TOML {type(value).__name__} ({value})"  # dates and times


class _Where:
    """Builds messages that name the file, device and key of a problem."""

    def __init__(self, path: Path, device: str | None = None):
        self.path, self.device = path, device

    def error(self, key: str, problem: str, fix: str = "") -> UsageError:
        where = f"device {_shown(self.device)}: " if self.device else ""
        text = f"{self.path}: {where}{key}: {problem}"
        return UsageError(f"{text}. {fix}" if fix else text)


# --- typed getters ---------------------------------------------------------------------------
def _check_keys(table: dict, allowed: set[str], where: _Where, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise where.error(f"{prefix}{_key_text(key)}", "unknown key",
                              f"{hint}Known keys here: {', '.join(sorted(allowed))}")


def _type_fix(key: str, value: Any, kinds: tuple[type, ...]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, str) and int in kinds and re.fullmatch(r"\s*-?\d+\s*", value):
        return f"write the number without quotes: {leaf} = {value.strip()}"
    if isinstance(value, str) and float in kinds and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
        return f"write the number without quotes: {leaf} = {value.strip()}"
    if isinstance(value, str) and bool in kinds and value.strip().lower() in ("true", "false"):
        return f"write it without quotes: {leaf} = {value.strip().lower()}"
    if str in kinds and not isinstance(value, (list, dict)):
        return f"put it in double quotes: {leaf} = \"...\""
    return ""


def _get(table: dict, key: str, kind: type | tuple, where: _Where, prefix: str,
         default: Any = ..., rule: _Rule | None = None, secret: bool = False) -> Any:
    """table[key] checked for its TOML type (and rule); `secret`: never echo the value."""
    if key not in table:
        if default is ...:
            raise where.error(f"{prefix}{key}", "missing", "this key is required")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are ints in Python; never accept one for the other.
    ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
    if not ok:
        named = [k for k in kinds if not (k is int and float in kinds)]  # "a number" covers both
        wanted = " or ".join(_TOML_KIND.get(k, k.__name__) for k in named)
        got = _describe(value) if not secret else _TOML_KIND.get(type(value), "another type")
        raise where.error(f"{prefix}{key}", f"must be {wanted}, got {got}",
                          "" if secret else _type_fix(key, value, kinds))
    if rule is not None and not rule.ok(value):
        shown = "this value" if secret else _shown(value)
        raise where.error(f"{prefix}{key}", f"{shown} is not allowed here", f"use {rule.words}")
    return value


def _number(table: dict, key: str, where: _Where, prefix: str, default: float,
            high: float) -> float:
    """Seconds: above 0 (a zero or negative timeout never waits) and at most `high`."""
    value = _get(table, key, (int, float), where, prefix, default)
    if not 0 < value <= high:  # also false for nan; inf is above high
        raise where.error(f"{prefix}{key}", f"{value} is out of range",
                          f"use a number of seconds above 0 and at most {high:g}")
    return float(value)


def _path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _real(path: Path) -> Path:
    """Symlinks resolved; unlike Path.resolve() this never raises (a symlink loop stays as is)."""
    return Path(os.path.realpath(path))


def _kind(path: Path) -> str:
    """"file", "dir", "other" or "none"; an unreadable path (EACCES, a loop) counts as "none"."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return "none"
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def _file(table: dict, key: str, where: _Where, prefix: str, base: Path) -> Path:
    value = _get(table, key, str, where, prefix)
    if not value.strip():
        raise where.error(f"{prefix}{key}", "is empty", "give the path of a file")
    if "\0" in value:
        raise where.error(f"{prefix}{key}", "contains a NUL character", "give the path of a file")
    return _path(base, value)


# --- addresses and hosts ---------------------------------------------------------------------
def _interface(table: dict, key: str, version: int, where: _Where, prefix: str):
    """An address with its prefix length (198.51.100.2/24), of the given IP version."""
    if key not in table:
        return None
    value = _get(table, key, str, where, prefix)
    name = f"{prefix}{key}"
    if "%" in value:
        raise where.error(name, f"{_shown(value)} has a scope/zone ID", "remove the %... part; "
                          "the link's interface is given by device_if/harness_if")
    if "/" not in value:
        raise where.error(name, f"{_shown(value)} has no prefix length",
                          "write it like 198.51.100.2/24 or 2001:db8::2/64")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise where.error(name, f"{_shown(value)} is not an address with a prefix length",
                          "write it like 198.51.100.2/24 or 2001:db8::2/64") from None
    if iface.version != version:
        other = key.replace("v4", "v6") if version == 4 else key.replace("v6", "v4")
        fix = f"put it in {other}" if other != key else f"give an IPv{version} address"
        raise where.error(name, f"{_shown(value)} is an IPv{iface.version} address, expected IPv{version}", fix)
    ip, net = iface.ip, iface.network
    for bad, what in ((ip.is_unspecified, "the unspecified address"), (ip.is_loopback, "a loopback address"),
                      (ip.is_multicast, "a multicast address"),
                      (version == 4 and ip in ipaddress.ip_network("240.0.0.0/4"), "a reserved address")):
        if bad:
            raise where.error(name, f"{_shown(value)} is {what}, not a host's address",
                              "give the unicast address the interface has on the link")
    if net.num_addresses > 2 and (ip == net.network_address or (version == 4 and ip == net.broadcast_address)):
        raise where.error(name, f"{ip} is the {'network' if ip == net.network_address else 'broadcast'} "
                          f"address of {net}", "give a host address inside the network")
    return iface


def host_problem(value: str) -> str | None:
    """What is wrong with an SSH host (an IP address or a DNS name), or None. One rule for the
    inventory's ssh.host and for an address a labgrid place gives."""
    address, _, zone = value.partition("%")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        pass
    else:
        if not zone or (":" in address and LINUX_IFNAME.ok(zone)):
            return None
        return "has a zone that is not an interface name"
    problem = None
    if not value or len(value) > 253:
        problem = "must be 1-253 characters"
    elif ":" in value:
        problem = "is not a valid IPv6 address"
    elif re.fullmatch(r"[0-9.]+", value):
        problem = "is not a valid IPv4 address"
    elif not all(HOST_LABEL.fullmatch(label) for label in value.rstrip(".").split(".")):
        problem = "is not a valid host name"
    return problem


def _host(table: dict, where: _Where) -> str:
    value = _get(table, "host", str, where, "ssh.")
    problem = host_problem(value)
    if problem == "has a zone that is not an interface name":
        raise where.error("ssh.host", f"{_shown(value)} {problem}",
                          f"write fe80::1%eth0, with a zone of {LINUX_IFNAME.words}")
    if problem:
        raise where.error("ssh.host", f"{_shown(value)} {problem}",
                          "give an IP address or a DNS name (letters, digits, '-' and '.')")
    return value


# --- tables ----------------------------------------------------------------------------------
def _credentials(table: dict, where: _Where, prefix: str, base: Path, lab_key: Path | None,
                 user_from_place: bool = False) -> Credentials:
    """A login. lab_key: the client key the lab creates (a lab device's key may not exist yet);
    user_from_place: the user may be left to a labgrid place's NetworkService."""
    if "password" in table:
        raise where.error(f"{prefix}password", "inline passwords are not allowed",
                          "put the password in an environment variable and name it with password_env")
    if "passphrase" in table:
        raise where.error(f"{prefix}passphrase", "inline key passphrases are not allowed",
                          "put it in an environment variable and name it with passphrase_env")
    user = _get(table, "user", str, where, prefix, None if user_from_place else ..., rule=USER_NAME)
    key_file = None
    if "key_file" in table:
        key_file = _file(table, "key_file", where, prefix, base)
        if _kind(key_file) == "dir":
            raise where.error(f"{prefix}key_file", f"{key_file} is a directory, not a key file",
                              "give the path of the private key file")
        if _kind(key_file) != "file" and _real(key_file) != lab_key:
            lab_hint = f" (the lab creates only {lab_key})" if lab_key else ""
            raise where.error(f"{prefix}key_file", f"{key_file} does not exist{lab_hint}",
                              "create the key (ssh-keygen -t ed25519) or fix the path")
    use_agent = _get(table, "use_agent", bool, where, prefix, False)
    # A value here that is not a variable name is most likely the secret itself: never echo it.
    password_env = _get(table, "password_env", str, where, prefix, None, ENV_NAME, secret=True)
    passphrase_env = _get(table, "passphrase_env", str, where, prefix, None, ENV_NAME, secret=True)
    if key_file is None and not use_agent and password_env is None:
        raise where.error(prefix.rstrip("."), "no way to log in",
                          "set key_file, use_agent = true, or password_env")
    return Credentials(user, key_file, use_agent, password_env, passphrase_env)


def _ssh(table: Any, where: _Where, base: Path, lab_dir: Path | None,
         from_place: bool = False) -> SshConfig:
    """The [device.ssh] table; lab_dir is the lab's state directory for a lab device, else None;
    from_place: a labgrid device, whose host and user may come from its place."""
    if not isinstance(table, dict):
        raise where.error("ssh", f"must be a table ([device.ssh]), got {_describe(table)}")
    p = "ssh."
    _check_keys(table, {"host", "port", "user", "key_file", "use_agent", "password_env",
                        "passphrase_env", "password", "passphrase", "known_hosts",
                        "host_key_policy", "connect_timeout", "command_timeout", "keepalive",
                        *BECOME_KEYS},
                where, p)
    host = _host(table, where) if "host" in table or not from_place else None
    port = _get(table, "port", int, where, p, 22)
    if not 1 <= port <= 65535:
        raise where.error("ssh.port", f"{port} is out of range", "use a TCP port in 1..65535 (sshd: 22)")
    lab_key = lab_dir / "id_ed25519" if lab_dir else None
    login = _credentials(table, where, p, base, lab_key, user_from_place=from_place)
    policy = _get(table, "host_key_policy", str, where, p, "strict")
    if policy not in HOST_KEY_POLICIES:
        raise where.error("ssh.host_key_policy", f"{_shown(policy)} is not a policy",
                          f"use one of {', '.join(HOST_KEY_POLICIES)}")
    if "known_hosts" in table:
        known_hosts = _file(table, "known_hosts", where, p, base)
    else:
        known_hosts = lab_dir / "known_hosts" if lab_dir else _path(base, "~/.ssh/known_hosts")
    if _kind(known_hosts) == "dir":
        raise where.error("ssh.known_hosts", f"{known_hosts} is a directory",
                          "give the path of a known_hosts file")
    if lab_dir is not None and not _real(known_hosts).is_relative_to(lab_dir):
        # `lab up` rewrites this file with the lab's host keys.
        raise where.error("ssh.known_hosts", f"{known_hosts} is outside the lab's state directory "
                          f"{lab_dir}, and `neighcheck lab up` rewrites it",
                          f"use {lab_dir / 'known_hosts'} (or leave the key out)")
    if policy == "strict" and lab_dir is None and _kind(known_hosts) != "file":
        raise where.error("ssh.known_hosts", f"{known_hosts} does not exist",
                          "add the device's key with ssh-keyscan, or set host_key_policy = "
                          "\"trust-on-first-use\" to record it on first connect")
    keepalive = _get(table, "keepalive", int, where, p, 15)
    if not 0 <= keepalive <= 3600:
        raise where.error("ssh.keepalive", f"{keepalive} is out of range",
                          "use 0..3600 seconds (0 turns keepalives off)")
    return SshConfig(
        host=host, port=port, login=login, known_hosts=known_hosts, host_key_policy=policy,
        connect_timeout=_number(table, "connect_timeout", where, p, 5.0, 120),
        command_timeout=_number(table, "command_timeout", where, p, 30.0, 3600),
        keepalive=keepalive, become=_become(table, where),
    )


def _link(table: Any, index: int, os_name: str, is_lab: bool, where: _Where) -> TestLink:
    p = f"link[{index}]."
    if not isinstance(table, dict):
        raise where.error(p.rstrip("."), f"must be a table ([[device.link]]), got {_describe(table)}")
    _check_keys(table, {"device_if", "harness_if", "device_v4", "device_v6", "harness_v4",
                        "harness_v6", *SEED_POOL_KEYS}, where, p)
    # A lab device's interfaces are veths in a Linux namespace, whatever its os.
    dev_rule = LINUX_IFNAME if os_name == "linux" or is_lab else WINDOWS_IFNAME
    link = TestLink(
        device_if=_get(table, "device_if", str, where, p, rule=dev_rule),
        harness_if=_get(table, "harness_if", str, where, p, rule=LINUX_IFNAME),
        device_v4=_interface(table, "device_v4", 4, where, p),
        device_v6=_interface(table, "device_v6", 6, where, p),
        harness_v4=_interface(table, "harness_v4", 4, where, p),
        harness_v6=_interface(table, "harness_v6", 6, where, p),
    )
    if link.device_v4 is None and link.device_v6 is None:
        raise where.error(p + "device_v4", "a test link needs device_v4, device_v6 or both",
                          "give the device's addresses on this link")
    for fam in ("v4", "v6"):
        dev, har = getattr(link, f"device_{fam}"), getattr(link, f"harness_{fam}")
        if dev is None and har is not None:
            raise where.error(p + f"harness_{fam}", f"is given but device_{fam} is not",
                              f"add device_{fam} or remove harness_{fam}")
        if dev is not None and har is not None and dev.network != har.network:
            raise where.error(p + f"harness_{fam}", f"{har} is not in the device's network {dev.network}",
                              "both ends of a link share one network")
        if dev is not None and har is not None and dev.ip == har.ip:
            raise where.error(p + f"harness_{fam}", f"{har.ip} is also the device's address",
                              "give the harness end an address of its own")
    return _seed_pools(table, link, where, p)


# --- seed pools (issue 14): where a link's seeds come from ------------------------------------
SEED_POOL_KEYS = ("seed_v4", "seed_v6", "seed_from")
SEED_FROM = ("subnet",)
MAX_SEED_NETWORKS = 16
# Never a sender a neighbor table may learn: "this network", loopback, multicast, reserved,
# IPv4-mapped (an IPv6 stack treats these as IPv4).
_NOT_SEEDS = {4: [(ipaddress.ip_network(n), what) for n, what in (
                  ("0.0.0.0/8", "'this network' (0.0.0.0/8)"), ("127.0.0.0/8", "loopback"),
                  ("224.0.0.0/4", "multicast"), ("240.0.0.0/4", "reserved (240.0.0.0/4)"))],
              6: [(ipaddress.ip_network(n), what) for n, what in (
                  ("::/127", "the unspecified or loopback address"), ("ff00::/8", "multicast"),
                  ("::ffff:0:0/96", "IPv4-mapped"))]}


def _seed_pools(table: dict, link: TestLink, where: _Where, p: str) -> TestLink:
    """seed_v4 / seed_v6 (a CIDR or a list of CIDRs, inside or outside the link's subnet;
    fe80::/64 too) and seed_from = "subnet" (the link's own subnets). Which addresses of a pool
    are seeds, and what it holds, is harness.traffic.seeding's rule."""
    if "seed_from" in table:
        value = _get(table, "seed_from", str, where, p)
        if value not in SEED_FROM:
            raise where.error(p + "seed_from", f"{_shown(value)} is not a seed source",
                              f"use seed_from = \"subnet\", or give seed_v4/seed_v6 networks")
        given = [k for k in ("seed_v4", "seed_v6") if k in table]
        if given:
            raise where.error(p + "seed_from", f"is given together with {' and '.join(given)}",
                              "use one: seed_from = \"subnet\", or seed_v4/seed_v6 networks")
    pools = {}
    for version in (4, 6):
        key = f"seed_v{version}"
        if key in table:
            if getattr(link, f"device_v{version}") is None:
                raise where.error(p + key, f"is given but device_v{version} is not",
                                  f"add device_v{version} or remove {key}")
            pools[key] = _seed_networks(table, key, version, where, p)
    return dataclasses.replace(link, seed_from=table.get("seed_from"), **pools)


def _seed_networks(table: dict, key: str, version: int, where: _Where, p: str) -> tuple:
    name = p + key
    example = "\"198.51.100.128/25\"" if version == 4 else "\"fe80::/64\""
    value = _get(table, key, (str, list), where, p)
    items = [value] if isinstance(value, str) else value
    if not items or len(items) > MAX_SEED_NETWORKS:
        raise where.error(name, f"needs 1-{MAX_SEED_NETWORKS} networks, got {len(items)}",
                          f"e.g. {key} = {example}")
    networks: list = []
    for item in items:
        if not isinstance(item, str):
            raise where.error(name, f"must be a network or a list of networks, got {_describe(item)}",
                              f"e.g. {key} = {example}")
        if "%" in item:
            raise where.error(name, f"{_shown(item)} has a scope/zone ID",
                              "remove the %... part; the link's interface is given by harness_if")
        if "/" not in item:
            raise where.error(name, f"{_shown(item)} has no prefix length",
                              f"write a network, e.g. {key} = {example}")
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise where.error(name, f"{_shown(item)} is not a network",
                              f"write a network, e.g. {key} = {example}") from None
        if net.version != version:
            raise where.error(name, f"{_shown(item)} is an IPv{net.version} network",
                              f"put it in seed_v{net.version}")
        if str(net) != item.lower() and int(ipaddress.ip_interface(item).ip) != int(net.network_address):
            raise where.error(name, f"{_shown(item)} has host bits set", f"write {net}")
        for bad, what in _NOT_SEEDS[version]:
            if net.overlaps(bad):
                raise where.error(name, f"{net} overlaps {what}, which is no neighbor's address",
                                  "give unicast networks")
        for other in networks:
            if net.overlaps(other):
                raise where.error(name, f"{net} overlaps {other}", "give each address range once")
        networks.append(net)
    return tuple(networks)


def _lab_ifname(name: str, key: str, where: _Where) -> None:
    """The lab creates and deletes only links with its prefix; it sets their sysctls by name."""
    if not name.startswith(LAB_PREFIX):
        raise where.error(key, f"harness interface {name!r} of a lab device must start with "
                          f"{LAB_PREFIX!r}", "the lab only creates and deletes links with its prefix")
    if "." in name:
        raise where.error(key, f"{name!r} contains '.', which sysctl reads as a separator",
                          "use '-' instead (the lab sets net.ipv6.conf.<name>.* on it)")


def _lab(table: Any, where: _Where, ssh: SshConfig, links: tuple[TestLink, ...], os_name: str) -> LabConfig:
    p = "lab."
    if not isinstance(table, dict):
        raise where.error("lab", f"must be a table ([device.lab]) for a lab device, got {_describe(table)}")
    _check_keys(table, {"mgmt_harness_if", "mgmt_harness_addr", "ipv6", *LAB_ACCESS_KEYS, *LAB_SHAPE_KEYS},
                where, p)
    mgmt_if = _get(table, "mgmt_harness_if", str, where, p, rule=LINUX_IFNAME)
    mgmt_addr = _interface(table, "mgmt_harness_addr", 4, where, p)
    if mgmt_addr is None:
        raise where.error(p + "mgmt_harness_addr", "missing", "e.g. mgmt_harness_addr = \"198.18.200.1/24\"")
    try:
        host = ipaddress.ip_address(ssh.host)
    except ValueError:
        raise where.error("ssh.host", f"{ssh.host!r} must be an IPv4 address for a lab device",
                          "give an address in lab.mgmt_harness_addr's network") from None
    if host not in mgmt_addr.network or host == mgmt_addr.ip:
        raise where.error("ssh.host", f"{host} must be another address in lab.mgmt_harness_addr's "
                          f"network {mgmt_addr.network}", "the lab puts the device's sshd on that network")
    _lab_ifname(mgmt_if, p + "mgmt_harness_if", where)
    for i, link in enumerate(links):
        _lab_ifname(link.harness_if, f"link[{i}].harness_if", where)
        if link.device_if in (LAB_MGMT_DEVICE_IF, "lo"):
            raise where.error(f"link[{i}].device_if", f"{link.device_if!r} is taken in a lab device "
                              f"({LAB_MGMT_DEVICE_IF} is its management link)", "use eth1, eth2, ...")
    lab = LabConfig(mgmt_if, mgmt_addr, _get(table, "ipv6", bool, where, p, True),
                    root_login=_lab_root_login(table, where, ssh))
    return _lab_shape(table, where, links, lab, os_name)


# --- privileges: sudo for accounts that are not root, and lab devices whose root may not log in
BECOME_KEYS = ("become",)
LAB_ACCESS_KEYS = ("root_login",)


def _become(table: dict, where: _Where) -> str | None:
    """[device.ssh] become: how the SSH account runs what needs root (agent calls, the device
    lock, cleanup). Only sudo, always non-interactive: a run never waits at a prompt."""
    value = _get(table, "become", str, where, "ssh.", None)
    if value is not None and value not in BECOME_METHODS:
        raise where.error("ssh.become", f"{_shown(value)} is not supported",
                          f"use become = \"sudo\" (passwordless: NOPASSWD), or log in as root and "
                          "leave become out")
    return value


def _check_become(ssh: SshConfig, os_name: str, where: _Where) -> None:
    if ssh.become is not None and os_name != "linux":
        raise where.error("ssh.become", f"is for Linux devices, not {os_name}",
                          "on Windows log in with an administrator account and leave become out")


def _lab_root_login(table: dict, where: _Where, ssh: SshConfig) -> bool:
    """[device.lab] root_login = false builds a device whose root may not log in over SSH; the
    lab gives it the account LAB_SUDO_USER, which may use sudo without a password."""
    root_login = _get(table, "root_login", bool, where, "lab.", True)
    if not root_login and ssh.login.user == "root":
        raise where.error("ssh.user", "root may not log in on this lab device (lab.root_login = false)",
                          f"set user = \"{LAB_SUDO_USER}\" and become = \"sudo\" in [device.ssh]")
    return root_login


# --- lab device shapes (issue 14): bystanders behind a bridge, a busybox userland --------------
LAB_SHAPE_KEYS = ("bystanders", "userland")
LAB_USERLANDS = ("full", "busybox")
MAX_BYSTANDERS = 4


def lab_bystander_addresses(link: TestLink, count: int) -> list[tuple[str | None, str | None]]:
    """The addresses (with prefix length) the lab gives bystander 1..count on a link: the
    highest host addresses of the IPv4 subnet and interface IDs ::bb01.. in the IPv6 network,
    never the device's or the harness's. Raises ValueError when the subnet has no room."""
    out: list[list] = [[None, None] for _ in range(count)]
    for index, (dev, har) in enumerate(((link.device_v4, link.harness_v4), (link.device_v6, link.harness_v6))):
        if dev is None or not count:
            continue
        net, taken = dev.network, {dev.ip} | ({har.ip} if har else set())
        if index == 0:
            last = int(net.broadcast_address) - (1 if net.prefixlen <= 30 else 0)
            candidates = (ipaddress.IPv4Address(n) for n in range(last, int(net.network_address), -1))
        else:
            candidates = (net.network_address + 0xBB00 + k for k in range(1, 256))
        free = [a for a in candidates if a not in taken][:count]
        if len(free) < count:
            raise ValueError(f"{net} has no room for {count} bystander(s) beside the device and harness")
        for k, address in enumerate(free):
            out[k][index] = f"{address}/{net.prefixlen}"
    return [tuple(pair) for pair in out]


def _lab_shape(table: dict, where: _Where, links: tuple[TestLink, ...], lab: LabConfig,
               os_name: str) -> LabConfig:
    p = "lab."
    bystanders = _get(table, "bystanders", int, where, p, 0)
    if not 0 <= bystanders <= MAX_BYSTANDERS:
        raise where.error(p + "bystanders", f"{bystanders} is out of range",
                          f"use 0..{MAX_BYSTANDERS} hosts beside the device on each test link")
    userland = _get(table, "userland", str, where, p, "full")
    if userland not in LAB_USERLANDS:
        raise where.error(p + "userland", f"{_shown(userland)} is not a lab userland",
                          f"use one of {', '.join(LAB_USERLANDS)}")
    if userland != "full" and os_name != "linux":
        raise where.error(p + "userland", f"{userland!r} is for a Linux device, this one is {os_name}",
                          "remove lab.userland")
    if userland == "busybox" and not lab.root_login:
        raise where.error(p + "userland", "a busybox userland has no sudo, and lab.root_login = false needs it",
                          "leave root_login out, or userland out")
    for i, link in enumerate(links):
        try:
            addresses = lab_bystander_addresses(link, bystanders)
        except ValueError as exc:
            raise where.error(f"link[{i}]", str(exc), "use fewer lab.bystanders or a wider subnet") from None
        for pair in addresses:
            for address in filter(None, pair):
                ip = ipaddress.ip_interface(address).ip
                pool = link.seed_v4 if ip.version == 4 else link.seed_v6
                if link.seed_from == "subnet" or any(ip in net for net in pool):
                    raise where.error(f"link[{i}].seed_v{ip.version}" if pool else f"link[{i}].seed_from",
                                      f"the seeds would take bystander address {ip}",
                                      "give the link a seed pool without the bystanders' addresses")
    return dataclasses.replace(lab, bystanders=bystanders, userland=userland)


def _agent(table: Any, where: _Where) -> AgentConfig:
    if table is None:
        return AgentConfig()
    if not isinstance(table, dict):
        raise where.error("agent", f"must be a table ([device.agent]), got {_describe(table)}")
    _check_keys(table, {"command", "launcher", "upload_dir"}, where, "agent.")

    def argv(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise where.error(f"agent.{key}", f"cannot be split into words ({exc})",
                                  "write it as a list of strings: [\"/opt/agent\", \"--json\"]") from None
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
            raise where.error(f"agent.{key}", f"must be a string or a list of non-empty strings, got "
                              f"{_describe(value)}", "e.g. command = [\"/opt/vendor/agent\", \"--json\"]")
        return tuple(value)

    command = argv("command")
    if "command" in table and not command:
        raise where.error("agent.command", "is empty", "remove it to use the built-in agent")
    upload_dir = _get(table, "upload_dir", str, where, "agent.", None, UPLOAD_DIR)
    if upload_dir is not None and ".." in re.split(r"[\\/]", upload_dir):
        raise where.error("agent.upload_dir", "'..' is not allowed", "give a plain directory")
    return AgentConfig(command=command, launcher=argv("launcher"), upload_dir=upload_dir)


def _labgrid(table: Any, where: _Where, ssh_table: dict, is_lab: bool) -> LabgridConfig:
    """[device.labgrid]: the labgrid place this device is reserved as (harness/places.py)."""
    if not isinstance(table, dict):
        raise where.error("labgrid", f"must be a table ([device.labgrid]), got {_describe(table)}",
                          "write [device.labgrid] with place = \"...\"")
    if is_lab:
        raise where.error("labgrid", "a lab device cannot also be a labgrid place: `neighcheck lab up` "
                          "builds it on this host", "remove [device.labgrid] or [device.lab]")
    _check_keys(table, {"place", "resource"}, where, "labgrid.")
    place = _get(table, "place", str, where, "labgrid.", rule=LABGRID_NAME)
    resource = _get(table, "resource", str, where, "labgrid.", None, LABGRID_NAME)
    left_out = frozenset(key for key in ("host", "user", "port") if key not in ssh_table)
    return LabgridConfig(place=place, resource=resource, from_place=left_out)


def _capabilities(table: Any, where: _Where) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise where.error("capabilities", f"must be a table, got {_describe(table)}")
    _check_keys(table, {"ipv4", "ipv6", "max_entries"}, where, "capabilities.")
    caps: dict[str, Any] = {}
    for key in ("ipv4", "ipv6"):
        if key in table:
            caps[key] = _get(table, key, bool, where, "capabilities.")
    if "max_entries" in table:
        value = _get(table, "max_entries", int, where, "capabilities.")
        if not 1 <= value <= 1_000_000:
            raise where.error("capabilities.max_entries", f"{value} is out of range", "use 1..1000000")
        caps["max_entries"] = value
    return caps


def _unprivileged(raw: Any, where: _Where, base: Path, ssh: SshConfig, os_name: str,
                  lab_key: Path | None) -> Credentials:
    if not isinstance(raw, dict):
        raise where.error("unprivileged", f"must be a table ([device.unprivileged]), got {_describe(raw)}")
    _check_keys(raw, {"user", "key_file", "use_agent", "password_env", "passphrase_env",
                      "password", "passphrase"}, where, "unprivileged.")
    login = _credentials(raw, where, "unprivileged.", base, lab_key)
    # RET-ACCESS expects this account to be refused; an admin account would fail it wrongly.
    if login.user == ssh.login.user:
        raise where.error("unprivileged.user", f"{login.user!r} is also ssh.user, the admin account",
                          f"name an account without admin rights on this {os_name} device")
    if login.user.lower() in ADMIN_USERS:
        raise where.error("unprivileged.user", f"{login.user!r} is an administrator account",
                          f"name an account without admin rights on this {os_name} device")
    return login


def _device(table: Any, index: int, path: Path, lab_dir: Path) -> Device:
    if not isinstance(table, dict):
        raise _Where(path).error(f"device[{index}]", f"must be a table ([[device]]), got {_describe(table)}")
    raw_name = table.get("name")
    where = _Where(path, raw_name if isinstance(raw_name, str) else f"#{index + 1}")
    _check_keys(table, {"name", "os", "ssh", "link", "agent", "unprivileged", "capabilities", "lab",
                        "labgrid"}, where, "")
    name = _get(table, "name", str, where, "", rule=DEVICE_NAME)
    os_name = _get(table, "os", str, where, "")
    if os_name not in ("linux", "windows"):
        raise where.error("os", f"{_shown(os_name)} is not supported", "use \"linux\" or \"windows\"")
    is_lab = "lab" in table
    base = path.parent
    if "ssh" not in table:
        raise where.error("ssh", "missing", "add a [device.ssh] table with host, user and key_file")
    labgrid = None
    if "labgrid" in table:
        ssh_table = table["ssh"] if isinstance(table["ssh"], dict) else {}
        labgrid = _labgrid(table["labgrid"], where, ssh_table, is_lab)
    ssh = _ssh(table["ssh"], where, base, lab_dir if is_lab else None, from_place=labgrid is not None)
    _check_become(ssh, os_name, where)
    raw_links = table.get("link")
    if isinstance(raw_links, dict):
        raise where.error("link", "is one table, not an array of tables",
                          "write [[device.link]] (double brackets) for each test link")
    if raw_links is not None and not isinstance(raw_links, list):
        raise where.error("link", f"must be an array of tables, got {_describe(raw_links)}",
                          "write a [[device.link]] table for each test link")
    if not raw_links:
        raise where.error("link", "a device needs at least one test link", "add a [[device.link]] table")
    links = tuple(_link(t, i, os_name, is_lab, where) for i, t in enumerate(raw_links))
    seen: dict[str, int] = {}
    for i, link in enumerate(links):
        if link.device_if in seen:
            raise where.error(f"link[{i}].device_if", f"{link.device_if!r} is also link[{seen[link.device_if]}]'s",
                              "each test link is a different interface of the device")
        seen[link.device_if] = i
    unpriv = None
    if "unprivileged" in table:
        unpriv = _unprivileged(table["unprivileged"], where, base, ssh, os_name,
                               lab_dir / "id_ed25519" if is_lab else None)
    return Device(
        name=name, os=os_name, ssh=ssh, links=links, agent=_agent(table.get("agent"), where),
        unprivileged=unpriv, capabilities=_capabilities(table.get("capabilities"), where),
        lab=_lab(table["lab"], where, ssh, links, os_name) if is_lab else None, labgrid=labgrid,
    )


def _read(path: Path) -> bytes:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: inventory file not found; pass --devices FILE "
                         "(see devices.toml)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the inventory: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UsageError(f"{path}: is a directory, not an inventory file; pass --devices FILE "
                         "(e.g. devices.toml)")
    if not stat.S_ISREG(info.st_mode):  # a FIFO or /dev/zero would block or never end
        raise UsageError(f"{path}: is not a regular file; pass --devices FILE (e.g. devices.toml)")
    if info.st_size > MAX_INVENTORY_BYTES:
        raise UsageError(f"{path}: {info.st_size} bytes is too large for an inventory (limit "
                         f"{MAX_INVENTORY_BYTES}); is this the right file?")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the inventory: {exc.strerror or exc}") from None


def _parse(path: Path, data: bytes) -> dict:
    try:
        text = data.decode("utf-8-sig")  # tolerate the BOM some Windows editors write
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                         "save the inventory as UTF-8") from None
    if not text.strip():
        raise UsageError(f"{path}: the inventory is empty; add at least one [[device]] table "
                         "(see devices.toml)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}; fix the syntax there") from None
    except RecursionError:
        raise UsageError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None


def _lab_state_dir(table: dict, where: _Where, inventory: Path) -> Path:
    """[lab] state_dir. `lab down` deletes this directory, so it must be the lab's own."""
    raw = _get(table, "state_dir", str, where, "lab.", ".lab")
    if not raw.strip() or "\0" in raw:
        raise where.error("lab.state_dir", "is empty", "e.g. state_dir = \".lab\"")
    if ".." in Path(raw).parts:
        raise where.error("lab.state_dir", f"{_shown(raw)}: '..' is not allowed",
                          "give a directory below the inventory's or an absolute path")
    path = _real(_path(inventory.parent, raw))
    kind = _kind(path)
    if kind not in ("dir", "none") or (kind == "none" and os.path.lexists(path)):
        raise where.error("lab.state_dir", f"{path} exists and is not a usable directory",
                          "give a new or empty directory, e.g. state_dir = \".lab\"")
    try:
        foreign = kind == "dir" and any(path.iterdir()) and \
            not any(_kind(path / m) != "none" for m in LAB_STATE_MARKERS)
    except OSError as exc:
        raise where.error("lab.state_dir", f"{path} cannot be listed ({exc.strerror})",
                          "give a directory the harness can read and write") from None
    if inventory.is_relative_to(path) or foreign:
        raise where.error("lab.state_dir", f"{path} already holds files that are not the lab's, and "
                          "`neighcheck lab down` deletes this directory",
                          "give a new or empty directory, e.g. state_dir = \".lab\"")
    return path


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate devices.toml; raise UsageError naming the first problem."""
    path = Path(path)
    data = _read(path)
    doc = _parse(path, data)
    resolved = _real(path)
    where = _Where(resolved)
    _check_keys(doc, {"device", "lab"}, where, "")
    lab_table = doc.get("lab", {})
    if not isinstance(lab_table, dict):
        raise where.error("lab", f"must be a table ([lab]), got {_describe(lab_table)}")
    _check_keys(lab_table, {"state_dir"}, where, "lab.")
    lab_dir = _lab_state_dir(lab_table, where, resolved)
    devices_raw = doc.get("device")
    if isinstance(devices_raw, dict):
        raise where.error("device", "is one table, not an array of tables",
                          "write [[device]] (double brackets) for each device")
    if devices_raw is not None and not isinstance(devices_raw, list):
        raise where.error("device", f"must be an array of tables, got {_describe(devices_raw)}",
                          "write a [[device]] table for each device")
    if not devices_raw:
        raise where.error("device", "no devices", "add at least one [[device]] table")
    devices = tuple(_device(t, i, resolved, lab_dir) for i, t in enumerate(devices_raw))
    _check_unique(devices, resolved)
    if any(d.lab is not None for d in devices) and not LAB_PATH.ok(str(lab_dir)):
        # The lab writes these paths into sshd_config and a `sh -c` script.
        raise where.error("lab.state_dir", f"{_shown(str(lab_dir))} cannot be used by the lab",
                          f"set [lab] state_dir to an absolute path of {LAB_PATH.words}")
    return Inventory(path=resolved, devices=devices, lab_state_dir=lab_dir,
                     raw_sha256=hashlib.sha256(data).hexdigest())


def _check_unique(devices: tuple[Device, ...], path: Path) -> None:
    names: dict[str, str] = {}
    owners: dict[str, tuple[str, str]] = {}  # harness interface -> (device, key)
    hosts: dict[tuple[str, int], str] = {}
    places: dict[str, str] = {}
    mgmt_nets: list[tuple[ipaddress.IPv4Network, str]] = []
    for device in devices:
        where = _Where(path, device.name)
        # Lab namespaces and report files are named after devices; some file systems fold case.
        if device.name.lower() in names:
            raise where.error("name", f"another device is also named {names[device.name.lower()]!r}",
                              "device names must be unique (ignoring case)")
        names[device.name.lower()] = device.name
        harness_ifs = [(f"link[{i}].harness_if", l.harness_if) for i, l in enumerate(device.links)]
        if device.lab:
            harness_ifs.append(("lab.mgmt_harness_if", device.lab.mgmt_harness_if))
        for key, name in harness_ifs:
            if name in owners:
                other_device, other_key = owners[name]
                whose = "this device" if other_device == device.name else f"device {other_device!r}"
                raise where.error(key, f"harness interface {name!r} is also used by {whose} ({other_key})",
                                  "each harness interface belongs to one link")
            owners[name] = (device.name, key)
        if device.labgrid is not None:
            # One run would wait for a place it already holds.
            place = device.labgrid.place
            if place in places:
                raise where.error("labgrid.place", f"{place!r} is also device {places[place]!r}'s place",
                                  "each device is its own labgrid place")
            places[place] = device.name
        endpoint = (device.ssh.host, device.ssh.port)
        if device.ssh.host is not None:  # (else the place gives it when the run acquires it)
            if endpoint in hosts:
                raise where.error("ssh.host", f"{device.ssh.host}:{device.ssh.port} is also device "
                                  f"{hosts[endpoint]!r}", "one device, one inventory entry")
            hosts[endpoint] = device.name
        if device.lab:
            # Lab management networks are all on this host: an overlap misroutes SSH.
            net = device.lab.mgmt_harness_addr.network
            for other_net, other in mgmt_nets:
                if net.overlaps(other_net):
                    raise where.error("lab.mgmt_harness_addr", f"{net} overlaps the management network "
                                      f"{other_net} of device {other!r}", "give each lab device its own network")
            mgmt_nets.append((net, device.name))
