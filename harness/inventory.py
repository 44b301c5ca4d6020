"""The inventory (devices.toml): parsed and validated before anything connects.

Every problem is a UsageError with one message that names the file, the device, the key and
what to do about it. Nothing from the inventory reaches a shell unquoted: names that end up
on a command line (interfaces, users) are also restricted to safe characters here, as a
second line of defence behind shlex.quote.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import UsageError

DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
LINUX_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # IFNAMSIZ-1, no '/', ':' or blanks
WINDOWS_IFNAME = re.compile(r"^[A-Za-z0-9 _.()#-]{1,128}$")
USER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$")
HOST_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LAB_PREFIX = "nck"
HOST_KEY_POLICIES = ("strict", "trust-on-first-use")


@dataclass(frozen=True)
class Credentials:
    user: str
    key_file: Path | None = None
    use_agent: bool = False
    password_env: str | None = None  # the name of an environment variable, never the secret
    passphrase_env: str | None = None


@dataclass(frozen=True)
class SshConfig:
    host: str
    port: int
    login: Credentials
    known_hosts: Path
    host_key_policy: str
    connect_timeout: float
    command_timeout: float
    keepalive: int


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


@dataclass(frozen=True)
class AgentConfig:
    command: tuple[str, ...] = ()  # a vendor's own agent; empty: the built-in one
    launcher: tuple[str, ...] = ()  # e.g. ("wine",) for the Wine lab device
    upload_dir: str | None = None  # Windows: where the built-in agent is uploaded


@dataclass(frozen=True)
class LabConfig:
    """How the embedded lab builds this device (only for lab = true)."""

    mgmt_harness_if: str
    mgmt_harness_addr: ipaddress.IPv4Interface
    ipv6: bool


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
        raise UsageError(f"{self.path}: no device named {name!r} (devices: {known})")

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


class _Where:
    """Builds messages that name the file, device and key of a problem."""

    def __init__(self, path: Path, device: str | None = None):
        self.path, self.device = path, device

    def error(self, key: str, problem: str, fix: str = "") -> UsageError:
        where = f"device {self.device!r}: " if self.device else ""
        text = f"{self.path}: {where}{key}: {problem}"
        return UsageError(f"{text}. {fix}" if fix else text)


def _check_keys(table: dict, allowed: set[str], where: _Where, prefix: str) -> None:
    for key in table:
        if key not in allowed:
            raise where.error(
                f"{prefix}{key}", "unknown key",
                f"known keys here: {', '.join(sorted(allowed))} (a typo?)",
            )


def _get(table: dict, key: str, kind: type | tuple, where: _Where, prefix: str,
         default: Any = ..., pattern: re.Pattern | None = None) -> Any:
    if key not in table:
        if default is ...:
            raise where.error(f"{prefix}{key}", "missing", "this key is required")
        return default
    value = table[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # TOML booleans are ints in Python; never accept one for the other.
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise where.error(f"{prefix}{key}", f"must be {names}, got {type(value).__name__} {value!r}")
    if pattern is not None and not pattern.fullmatch(value):
        raise where.error(f"{prefix}{key}", f"{value!r} has characters or a length that are not allowed",
                          f"allowed: {pattern.pattern}")
    return value


def _number(table: dict, key: str, where: _Where, prefix: str, default: float,
            low: float, high: float) -> float:
    value = _get(table, key, (int, float), where, prefix, default)
    if not low < value <= high:
        raise where.error(f"{prefix}{key}", f"{value} is out of range", f"use a value in ({low}, {high}]")
    return float(value)


def _path(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _interface(table: dict, key: str, version: int, where: _Where, prefix: str):
    if key not in table:
        return None
    value = _get(table, key, str, where, prefix)
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise where.error(f"{prefix}{key}", f"{value!r} is not an address with a prefix length",
                          "write it like 198.51.100.2/24 or 2001:db8::2/64") from None
    if iface.version != version:
        raise where.error(f"{prefix}{key}", f"{value!r} is an IPv{iface.version} address, expected IPv{version}")
    return iface


def _credentials(table: dict, where: _Where, prefix: str, base: Path, lab_keys_ok: bool) -> Credentials:
    if "password" in table:
        raise where.error(f"{prefix}password", "inline passwords are not allowed",
                          "put the password in an environment variable and name it with password_env")
    if "passphrase" in table:
        raise where.error(f"{prefix}passphrase", "inline key passphrases are not allowed",
                          "put it in an environment variable and name it with passphrase_env")
    user = _get(table, "user", str, where, prefix, pattern=USER_NAME)
    key_file = table.get("key_file")
    if key_file is not None:
        key_file = _path(base, _get(table, "key_file", str, where, prefix))
        if not key_file.is_file() and not lab_keys_ok:
            raise where.error(f"{prefix}key_file", f"{key_file} does not exist",
                              "create the key (ssh-keygen -t ed25519) or fix the path")
    use_agent = _get(table, "use_agent", bool, where, prefix, False)
    password_env = _get(table, "password_env", str, where, prefix, None, ENV_NAME)
    passphrase_env = _get(table, "passphrase_env", str, where, prefix, None, ENV_NAME)
    if key_file is None and not use_agent and password_env is None:
        raise where.error(prefix.rstrip("."), "no way to log in",
                          "set key_file, use_agent = true, or password_env")
    return Credentials(user, key_file, use_agent, password_env, passphrase_env)


def _ssh(table: Any, where: _Where, base: Path, is_lab: bool, lab_dir: Path) -> SshConfig:
    if not isinstance(table, dict):
        raise where.error("ssh", "must be a table ([device.ssh])")
    p = "ssh."
    _check_keys(table, {"host", "port", "user", "key_file", "use_agent", "password_env",
                        "passphrase_env", "password", "passphrase", "known_hosts",
                        "host_key_policy", "connect_timeout", "command_timeout", "keepalive"},
                where, p)
    host = _get(table, "host", str, where, p, pattern=HOST_NAME)
    port = _get(table, "port", int, where, p, 22)
    if not 1 <= port <= 65535:
        raise where.error("ssh.port", f"{port} is out of range", "use 1..65535")
    login = _credentials(table, where, p, base, lab_keys_ok=is_lab)
    policy = _get(table, "host_key_policy", str, where, p, "strict")
    if policy not in HOST_KEY_POLICIES:
        raise where.error("ssh.host_key_policy", f"{policy!r} is not a policy",
                          f"use one of {', '.join(HOST_KEY_POLICIES)}")
    default_kh = str(lab_dir / "known_hosts") if is_lab else "~/.ssh/known_hosts"
    known_hosts = _path(base, _get(table, "known_hosts", str, where, p, default_kh))
    if policy == "strict" and not is_lab and not known_hosts.is_file():
        raise where.error("ssh.known_hosts", f"{known_hosts} does not exist",
                          "add the device's key with ssh-keyscan, or set host_key_policy = "
                          "\"trust-on-first-use\" to record it on first connect")
    return SshConfig(
        host=host, port=port, login=login, known_hosts=known_hosts, host_key_policy=policy,
        connect_timeout=_number(table, "connect_timeout", where, p, 5.0, 0, 120),
        command_timeout=_number(table, "command_timeout", where, p, 30.0, 0, 3600),
        keepalive=int(_number(table, "keepalive", where, p, 15, 0, 3600)),
    )


def _link(table: Any, index: int, os_name: str, where: _Where) -> TestLink:
    p = f"link[{index}]."
    if not isinstance(table, dict):
        raise where.error(p.rstrip("."), "must be a table ([[device.link]])")
    _check_keys(table, {"device_if", "harness_if", "device_v4", "device_v6", "harness_v4",
                        "harness_v6"}, where, p)
    dev_pattern = LINUX_IFNAME if os_name == "linux" else WINDOWS_IFNAME
    link = TestLink(
        device_if=_get(table, "device_if", str, where, p, pattern=dev_pattern),
        harness_if=_get(table, "harness_if", str, where, p, pattern=LINUX_IFNAME),
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
        if dev is not None and har is not None and dev.network != har.network:
            raise where.error(p + f"harness_{fam}", f"{har} is not in the device's network {dev.network}")
        if dev is not None and har is not None and dev.ip == har.ip:
            raise where.error(p + f"harness_{fam}", f"{har.ip} is also the device's address")
    return link


def _lab(table: Any, where: _Where, ssh: SshConfig, links: tuple[TestLink, ...]) -> LabConfig:
    p = "lab."
    if not isinstance(table, dict):
        raise where.error("lab", "must be a table ([device.lab]) for a lab device")
    _check_keys(table, {"mgmt_harness_if", "mgmt_harness_addr", "ipv6"}, where, p)
    mgmt_if = _get(table, "mgmt_harness_if", str, where, p, pattern=LINUX_IFNAME)
    mgmt_addr = _interface(table, "mgmt_harness_addr", 4, where, p)
    if mgmt_addr is None:
        raise where.error(p + "mgmt_harness_addr", "missing", "e.g. 198.18.200.1/24")
    try:
        host = ipaddress.ip_address(ssh.host)
    except ValueError:
        raise where.error("ssh.host", f"{ssh.host!r} must be an IPv4 address for a lab device") from None
    if host not in mgmt_addr.network or host == mgmt_addr.ip:
        raise where.error("ssh.host", f"{host} must be another address in lab.mgmt_harness_addr's "
                          f"network {mgmt_addr.network}")
    for name in [mgmt_if] + [link.harness_if for link in links]:
        if not name.startswith(LAB_PREFIX):
            raise where.error("lab", f"harness interface {name!r} of a lab device must start with "
                              f"{LAB_PREFIX!r}", "the lab only creates and deletes links with its prefix")
    for i, link in enumerate(links):
        if link.harness_v4 is None and link.device_v4 is not None or \
           link.harness_v6 is None and link.device_v6 is not None:
            raise where.error(f"link[{i}]", "a lab link needs harness_v4/harness_v6 for each device address")
    return LabConfig(mgmt_if, mgmt_addr, _get(table, "ipv6", bool, where, p, True))


def _agent(table: Any, where: _Where) -> AgentConfig:
    if table is None:
        return AgentConfig()
    if not isinstance(table, dict):
        raise where.error("agent", "must be a table ([device.agent])")
    _check_keys(table, {"command", "launcher", "upload_dir"}, where, "agent.")

    def argv(key: str) -> tuple[str, ...]:
        value = table.get(key, [])
        if isinstance(value, str):
            try:
                value = shlex.split(value)
            except ValueError as exc:
                raise where.error(f"agent.{key}", f"cannot be split into words ({exc})") from None
        if not isinstance(value, list) or not all(isinstance(v, str) and v and "\0" not in v for v in value):
            raise where.error(f"agent.{key}", "must be a string or a list of non-empty strings")
        return tuple(value)

    command = argv("command")
    if "command" in table and not command:
        raise where.error("agent.command", "is empty", "remove it to use the built-in agent")
    upload_dir = _get(table, "upload_dir", str, where, "agent.", None)
    return AgentConfig(command=command, launcher=argv("launcher"), upload_dir=upload_dir)


def _capabilities(table: Any, where: _Where) -> dict[str, Any]:
    if table is None:
        return {}
    if not isinstance(table, dict):
        raise where.error("capabilities", "must be a table")
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


def _device(table: Any, index: int, path: Path, lab_dir: Path) -> Device:
    if not isinstance(table, dict):
        raise _Where(path).error(f"device[{index}]", "must be a table ([[device]])")
    raw_name = table.get("name")
    where = _Where(path, raw_name if isinstance(raw_name, str) else f"#{index + 1}")
    _check_keys(table, {"name", "os", "ssh", "link", "agent", "unprivileged", "capabilities", "lab"},
                where, "")
    name = _get(table, "name", str, where, "", pattern=DEVICE_NAME)
    os_name = _get(table, "os", str, where, "")
    if os_name not in ("linux", "windows"):
        raise where.error("os", f"{os_name!r} is not supported", "use \"linux\" or \"windows\"")
    is_lab = "lab" in table
    base = path.parent
    if "ssh" not in table:
        raise where.error("ssh", "missing", "add a [device.ssh] table with host, user and key_file")
    ssh = _ssh(table["ssh"], where, base, is_lab, lab_dir)
    raw_links = table.get("link")
    if not isinstance(raw_links, list) or not raw_links:
        raise where.error("link", "a device needs at least one test link", "add a [[device.link]] table")
    links = tuple(_link(t, i, os_name, where) for i, t in enumerate(raw_links))
    seen: set[str] = set()
    for i, link in enumerate(links):
        if link.device_if in seen:
            raise where.error(f"link[{i}].device_if", f"{link.device_if!r} is used by two links")
        seen.add(link.device_if)
    unpriv = None
    if "unprivileged" in table:
        raw = table["unprivileged"]
        if not isinstance(raw, dict):
            raise where.error("unprivileged", "must be a table")
        _check_keys(raw, {"user", "key_file", "use_agent", "password_env", "passphrase_env",
                          "password", "passphrase"}, where, "unprivileged.")
        unpriv = _credentials(raw, where, "unprivileged.", base, lab_keys_ok=is_lab)
    return Device(
        name=name, os=os_name, ssh=ssh, links=links, agent=_agent(table.get("agent"), where),
        unprivileged=unpriv, capabilities=_capabilities(table.get("capabilities"), where),
        lab=_lab(table["lab"], where, ssh, links) if is_lab else None,
    )


def load_inventory(path: str | Path) -> Inventory:
    """Read and validate devices.toml; raise UsageError naming the first problem."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: inventory file not found; pass --devices FILE "
                         "(see devices.example.toml)") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the inventory: {exc.strerror}") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None
    where = _Where(path)
    _check_keys(doc, {"device", "lab"}, where, "")
    lab_table = doc.get("lab", {})
    if not isinstance(lab_table, dict):
        raise where.error("lab", "must be a table ([lab])")
    _check_keys(lab_table, {"state_dir"}, where, "lab.")
    lab_dir = _path(path.parent.resolve(), _get(lab_table, "state_dir", str, where, "lab.", ".lab"))
    devices_raw = doc.get("device")
    if not isinstance(devices_raw, list) or not devices_raw:
        raise where.error("device", "no devices", "add at least one [[device]] table")
    resolved = path.resolve()
    devices = tuple(_device(t, i, resolved, lab_dir) for i, t in enumerate(devices_raw))
    _check_unique(devices, resolved)
    return Inventory(path=resolved, devices=devices, lab_state_dir=lab_dir,
                     raw_sha256=hashlib.sha256(data).hexdigest())


def _check_unique(devices: tuple[Device, ...], path: Path) -> None:
    names: set[str] = set()
    owners: dict[str, str] = {}
    hosts: dict[tuple[str, int], str] = {}
    for device in devices:
        where = _Where(path, device.name)
        if device.name in names:
            raise where.error("name", "two devices have this name", "device names must be unique")
        names.add(device.name)
        harness_ifs = [(f"link[{i}].harness_if", l.harness_if) for i, l in enumerate(device.links)]
        if device.lab:
            harness_ifs.append(("lab.mgmt_harness_if", device.lab.mgmt_harness_if))
        for key, name in harness_ifs:
            if name in owners:
                raise where.error(key, f"harness interface {name!r} is already used by device "
                                  f"{owners[name]!r}", "each harness interface belongs to one link")
            owners[name] = device.name
        endpoint = (device.ssh.host, device.ssh.port)
        if endpoint in hosts:
            raise where.error("ssh.host", f"{device.ssh.host}:{device.ssh.port} is also device "
                              f"{hosts[endpoint]!r}", "one device, one inventory entry")
        hosts[endpoint] = device.name
