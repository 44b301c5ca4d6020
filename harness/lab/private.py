"""Private labs: lab devices with names, links and subnets of their own, described by a few
numbers, with the inventory written for them.

`neighcheck bench` builds one (devices nckP-N) and so do the harness's tests (prefix nckF), so
that neither touches the shared default lab. A device is a management /24 and test links, each
a /24 and optionally an IPv6 /64, in 198.18.0.0/15: the device is .2 (::2), the harness .1
(::1). The lab itself is harness.lab.netns.Lab; this module writes the inventory it reads and,
in `PrivateLab.held`, holds a host-wide lock per lab (the names are fixed so that they say
whose they are: two sessions at once would tear down each other's devices) and always takes
the lab down again.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from harness.errors import NeighcheckError
from harness.hostlock import host_lock
from harness.inventory import Device, load_inventory
from harness.lab.netns import Lab


@dataclass(frozen=True)
class LabLink:
    device_if: str
    harness_if: str
    net: int                # the link's IPv4 /24 is 198.18.<net>.0/24
    v6: str | None = None   # the link's IPv6 /64 prefix, e.g. "2001:db8:f1::" (None: IPv4 only)


@dataclass(frozen=True)
class LabDevice:
    name: str
    mgmt_if: str            # the harness side of the management link
    mgmt_net: int           # 198.18.<mgmt_net>.0/24; the device's sshd listens on .2
    links: tuple[LabLink, ...]
    ipv6: bool = True       # False: the device has no IPv6 stack

    @property
    def host(self) -> str:
        return f"198.18.{self.mgmt_net}.2"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)  # strings and lists of strings: JSON's form is valid TOML


def _table(header: str, values: dict) -> list[str]:
    return [header] + [f"{key} = {_toml(value)}" for key, value in values.items()]


def inventory_text(devices: tuple[LabDevice, ...] | list[LabDevice], state_dir: Path, *,
                   comment: str = "", ssh_defaults: dict | None = None, lab: bool = True,
                   only: tuple[str, ...] | None = None, ssh: dict[str, dict] | None = None,
                   unprivileged: dict[str, dict | None] | None = None,
                   agent: dict[str, list[str]] | None = None) -> str:
    """devices.toml for (some of) the devices. Per device: overrides of [device.ssh] (a None
    value drops the key), of [device.unprivileged] (None drops the table), a vendor agent
    command. lab=False describes the same devices as a real lab would (no [device.lab]:
    nothing is built or removed for them)."""
    lines = [f"# {comment}"] if comment else []
    lines += _table("[lab]", {"state_dir": str(state_dir)})
    for device in devices:
        if only is not None and device.name not in only:
            continue
        ssh_table = {"host": device.host, "user": "root", "key_file": f"{state_dir}/id_ed25519",
                     "known_hosts": f"{state_dir}/known_hosts", **(ssh_defaults or {}),
                     **(ssh or {}).get(device.name, {})}
        lines += ["", "[[device]]", f"name = {_toml(device.name)}", 'os = "linux"']
        lines += _table("[device.ssh]", {k: v for k, v in ssh_table.items() if v is not None})
        unpriv = (unprivileged or {}).get(device.name, {"user": "nckuser",
                                                         "key_file": f"{state_dir}/id_ed25519"})
        if unpriv is not None:
            lines += _table("[device.unprivileged]", unpriv)
        if not device.ipv6:
            lines += _table("[device.capabilities]", {"ipv6": False})
        if agent and device.name in agent:
            lines += _table("[device.agent]", {"command": agent[device.name]})
        if lab:
            lines += _table("[device.lab]", {"mgmt_harness_if": device.mgmt_if,
                                             "mgmt_harness_addr": f"198.18.{device.mgmt_net}.1/24",
                                             "ipv6": device.ipv6})
        for link in device.links:
            values = {"device_if": link.device_if, "harness_if": link.harness_if,
                      "device_v4": f"198.18.{link.net}.2/24", "harness_v4": f"198.18.{link.net}.1/24"}
            if link.v6:
                values.update(device_v6=f"{link.v6}2/64", harness_v6=f"{link.v6}1/64")
            lines += _table("[[device.link]]", values)
    return "\n".join(lines) + "\n"


class PrivateLab:
    """A private lab under `root`: its state directory, its inventory (and variants of it),
    and the embedded lab that builds it. Nothing is built until up()."""

    def __init__(self, root: Path, devices: tuple[LabDevice, ...], *, ssh_defaults: dict | None = None,
                 comment: str = ""):
        self.root = root
        self.state = root / "state"
        self.devices = {d.name: d for d in devices}
        self._ssh_defaults = ssh_defaults or {}
        self._comment = comment
        self.path = self.inventory("devices.toml")
        self.lab = Lab(load_inventory(self.path))

    def inventory(self, filename: str, **variant) -> Path:
        """Write an inventory of the lab's devices to root/filename (inventory_text's options)."""
        path = self.root / filename
        path.write_text(inventory_text(tuple(self.devices.values()), self.state, comment=self._comment,
                                       ssh_defaults=self._ssh_defaults, **variant))
        return path

    def device(self, name: str) -> Device:
        """The device as the harness sees it (from the lab's inventory)."""
        return self.lab.inventory.device(name)

    def netns(self, name: str) -> str:
        return self.device(name).netns

    def up(self) -> None:
        self.lab.up()

    def down(self) -> None:
        self.lab.down()

    @classmethod
    @contextmanager
    def held(cls, root: Path, devices: tuple[LabDevice, ...], *, lock: Path, wait: float, busy: str,
             down_problem: Callable[[str], None] | None = None, **options) -> Iterator[PrivateLab]:
        """Hold `lock` (UsageError `busy` after `wait` s), build the lab under `root` (made 0755:
        the lab's unprivileged account runs agent scripts kept there), yield it, and always take
        it down and remove `root`. down_problem: report a failed teardown there instead of
        raising it (the bench still writes what it measured)."""
        with host_lock(lock, wait, busy):
            root.mkdir(parents=True, exist_ok=True)
            root.chmod(0o755)
            lab = None
            try:
                lab = cls(root, devices, **options)
                lab.up()
                yield lab
            finally:
                try:
                    if lab is not None:
                        lab.down()
                except NeighcheckError as exc:
                    if down_problem is None:
                        raise
                    down_problem(str(exc))
                finally:
                    shutil.rmtree(root, ignore_errors=True)
