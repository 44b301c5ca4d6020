"""The embedded lab: each lab device is a network namespace with its own sshd.

For every device with a [device.lab] table the lab makes:
- a namespace `nck-<device>`;
- a management veth (harness side `lab.mgmt_harness_if`, device side `eth0`) on which the
  device's sshd listens, and one veth per test link (harness side `harness_if`, device side
  `device_if`), addressed as the inventory says (IPv6 with `nodad`: DAD would delay binds);
- an sshd started from /usr/sbin/sshd inside the namespace, in a private mount namespace where
  root's rc files are blanked (bash sources ~/.bashrc on every SSH exec: 170 ms here), an
  unprivileged account exists (for RET-ACCESS) and /run/lock is private (so the on-device lock
  is per device, as on real hardware);
- with `lab.root_login = false`, a device whose root may not log in over SSH, as many real
  ones: sshd refuses root, and the account `nckadmin` may use sudo without a password (its
  own /etc/sudoers in the device's mount namespace);
- a client key and a known_hosts file under the lab's state directory.

Everything it makes is written to a state file first, so `down` can undo it after a crash.
Neighbor gc thresholds are host-global (one kernel table for every namespace): `up` raises
them so seeded tables are not evicted and `down` restores the recorded originals.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError
from harness.hostlock import host_lock
from harness.inventory import LAB_SUDO_USER, Device, Inventory

SSHD = "/usr/sbin/sshd"
DEVICE_AUTHORIZED_KEYS = "/run/lock/nck-authorized_keys"  # inside the device's mount namespace
UNPRIVILEGED_UID = 64999
SUDO_UID = 64998  # LAB_SUDO_USER, on devices with lab.root_login = false
SUDO = "/usr/bin/sudo"
# Values large enough for 16,384 entries per family on every link of several devices.
GC_THRESHOLDS = {"gc_thresh1": 262144, "gc_thresh2": 524288, "gc_thresh3": 1048576}
SYSCTL_ROOT = Path("/proc/sys")


def _sysctl_path(name: str) -> Path:
    return SYSCTL_ROOT / name.replace(".", "/")


def gc_sysctls() -> list[str]:
    return [f"net.{fam}.neigh.default.{key}" for fam in ("ipv4", "ipv6") for key in GC_THRESHOLDS]


# Every host sysctl the lab raises while it is up (restored to the recorded originals at down).
HOST_SYSCTLS = {name: GC_THRESHOLDS[name.rsplit(".", 1)[1]] for name in gc_sysctls()}
# veth delivers into the per-CPU backlog (1,000 frames by default): about 5 s after seeding,
# thousands of IPv6 entries' probe timers fire together and their NS overflow it before the
# responder sees them, so entries go FAILED (measured: 5-10k of 16,384 lost at the default).
HOST_SYSCTLS["net.core.netdev_max_backlog"] = 65536


def lab_sysctls() -> list[str]:
    return list(HOST_SYSCTLS)


def run(*argv: str, timeout: float = 15.0, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UsageError(f"lab: `{' '.join(argv)}` did not finish within {timeout:g} s") from None
    except FileNotFoundError:
        raise UsageError(f"lab: {argv[0]} is not installed (make run installs it)") from None
    if check and proc.returncode != 0:
        raise UsageError(f"lab: `{' '.join(argv)}` failed: {proc.stderr.strip()}")
    return proc


def _namespaces() -> set[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def _pid_alive(pid: int | None, marker: str) -> bool:
    """True when pid runs and its command line names `marker` (guards against reused pids)."""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def _kill(pid: int, timeout: float = 3.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@dataclass
class DeviceStatus:
    name: str
    netns: bool
    sshd: bool
    links: dict[str, bool]

    @property
    def up(self) -> bool:
        return self.netns and self.sshd and all(self.links.values())


class Lab:
    def __init__(self, inventory: Inventory):
        self.inventory = inventory
        self.dir = inventory.lab_state_dir
        self.state_file = self.dir / "state.json"
        key = hashlib.sha256(str(self.dir).encode()).hexdigest()[:12]
        self.lock_file = Path("/run/lock") / f"nck-lab-{key}.lock"

    # --- state -----------------------------------------------------------------------
    def _load_state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return {"devices": {}, "sysctls": {}, "created_dirs": []}
        except (OSError, ValueError) as exc:
            raise UsageError(f"lab: state file {self.state_file} is unreadable ({exc}); "
                             "remove it and run `neighcheck lab down` again") from None

    def _save_state(self, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)

    def _locked(self):
        """Serialise lab changes (pytest-xdist workers may all try to bring the lab up)."""
        return host_lock(self.lock_file, 120, f"lab: another process holds {self.lock_file} for "
                                              "over 120 s (a stuck `neighcheck lab`?)")

    @staticmethod
    def require_root() -> None:
        if os.geteuid() != 0:
            raise UsageError("the embedded lab needs root: it creates network namespaces and "
                             "veth links and sets host neighbor sysctls (run as root)")

    # --- up --------------------------------------------------------------------------
    def up(self, devices: tuple[Device, ...] | None = None) -> list[str]:
        """Bring the lab devices up; a device already up is left alone. Returns what was started."""
        self.require_root()
        if shutil.which("sshd") is None and not Path(SSHD).exists():
            raise UsageError(f"lab: {SSHD} is missing: apt-get install openssh-server (make run does)")
        devices = devices if devices is not None else self.inventory.lab_devices
        started = []
        with self._locked():
            state = self._load_state()
            self._raise_host_sysctls(state)
            self._client_key(state)
            for device in devices:
                if device.lab is None:
                    continue
                if self._status(device, state).up:
                    continue
                self._teardown_device(device, state)  # half-built: start clean
                self._build_device(device, state)
                started.append(device.name)
            self._write_known_hosts(state)
            self._save_state(state)
        for device in devices:
            if device.name in started:
                self._wait_ssh(device)
        return started

    def _raise_host_sysctls(self, state: dict) -> None:
        for name, wanted in HOST_SYSCTLS.items():
            path = _sysctl_path(name)
            current = int(path.read_text())
            if current < wanted and name not in state["sysctls"]:
                # Record (once) and restore at down only what this lab changed: a value that
                # was already high enough belongs to someone else.
                state["sysctls"][name] = current
            if current < wanted:
                path.write_text(str(wanted))
        self._save_state(state)

    def _client_key(self, state: dict) -> Path:
        key = self.dir / "id_ed25519"
        if not key.exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "neighcheck-lab", "-f", str(key))
        return key

    def _build_device(self, device: Device, state: dict) -> None:
        lab = device.lab
        assert lab is not None
        ns = device.netns
        ddir = self.dir / device.name
        ddir.mkdir(parents=True, exist_ok=True)
        record = {"netns": ns, "links": [], "sshd_pid": None, "dir": str(ddir)}
        state["devices"][device.name] = record
        self._save_state(state)  # recorded before made: down can undo a crash half-way

        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        if not lab.ipv6:
            for scope in ("all", "default"):
                run("ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        prefix = lab.mgmt_harness_addr.network.prefixlen
        self._veth(ns, lab.mgmt_harness_if, "eth0", record, state,
                   harness_addrs=[str(lab.mgmt_harness_addr)],
                   device_addrs=[f"{device.ssh.host}/{prefix}"])
        for link in device.links:
            harness_addrs = [str(a) for a in (link.harness_v4, link.harness_v6) if a is not None]
            device_addrs = [str(a) for a in (link.device_v4, link.device_v6 if lab.ipv6 else None)
                            if a is not None]
            self._veth(ns, link.harness_if, link.device_if, record, state, harness_addrs, device_addrs)
        if device.os == "windows":
            self._start_wine(device, ddir, record, state)
        record["sshd_pid"] = self._start_sshd(device, ddir)
        self._save_state(state)

    def _start_wine(self, device: Device, ddir: Path, record: dict, state: dict) -> None:
        """A Windows lab device is Wine in the namespace: its own prefix (a hard-linked clone of
        a cached template) and a persistent wineserver started inside the namespace before any
        SSH session, so Wine's services (which answer the network queries) live there."""
        from harness.lab import wine as winelab
        from harness.paths import cache_dir
        winelab.require_wine()
        template = cache_dir() / "prefix-template"
        winelab.prepare_prefix(template)
        prefix = ddir / "prefix"
        winelab.clone_prefix(template, prefix)
        record["wine_prefix"] = str(prefix)
        self._save_state(state)
        record["wineserver_pid"] = winelab.start_wineserver(device.netns, prefix)
        self._save_state(state)

    def _veth(self, ns: str, harness_if: str, device_if: str, record: dict, state: dict,
              harness_addrs: list[str], device_addrs: list[str]) -> None:
        if _link_exists(harness_if):
            raise UsageError(f"lab: a link named {harness_if} already exists on this host and "
                             "is not the lab's; rename it in devices.toml or delete it")
        record["links"].append(harness_if)
        self._save_state(state)
        run("ip", "link", "add", harness_if, "type", "veth", "peer", "name", device_if, "netns", ns)
        # The harness side must not autoconfigure or answer for anything: it only carries
        # what the seeder and responder send.
        for key in ("accept_ra", "accept_dad", "autoconf"):
            knob = Path("/proc/sys/net/ipv6/conf", harness_if, key)
            if knob.exists():  # absent when the host runs without IPv6
                knob.write_text("0")
        for addr in harness_addrs:
            run("ip", "addr", "add", addr, "dev", harness_if, *(["nodad"] if ":" in addr else []))
        for addr in device_addrs:
            run("ip", "-n", ns, "addr", "add", addr, "dev", device_if, *(["nodad"] if ":" in addr else []))
        run("ip", "link", "set", harness_if, "up")
        run("ip", "-n", ns, "link", "set", device_if, "up")

    def _start_sshd(self, device: Device, ddir: Path) -> int:
        host_key = ddir / "ssh_host_ed25519_key"
        if not host_key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"nck-{device.name}", "-f", str(host_key))
        client_pub = (self.dir / "id_ed25519.pub").read_text()
        (ddir / "authorized_keys").write_text(client_pub)
        pidfile = ddir / "sshd.pid"
        config = ddir / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {device.ssh.host}",
            f"Port {device.ssh.port}",
            f"HostKey {host_key}",
            f"PidFile {pidfile}",
            f"AuthorizedKeysFile {DEVICE_AUTHORIZED_KEYS}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            f"PermitRootLogin {'prohibit-password' if device.lab.root_login else 'no'}",
            "StrictModes no",  # the keys live in the project's tree, not in a home dir
            "UsePAM no",
            "UseDNS no",
            "PrintMotd no",
            "MaxSessions 100",
            "MaxStartups 100:30:200",
            "ClientAliveInterval 30",
            "Subsystem sftp internal-sftp",
            "LogLevel ERROR",
            *self._session_env(device, ddir),
            "",
        ]))
        empty_rc = ddir / "empty_rc"
        empty_rc.write_text("")
        passwd = ddir / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text() +
                          f"nckuser:x:{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}:neighcheck unprivileged:/tmp:/bin/sh\n"
                          + self._sudo_account(device))
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        q = shlex.quote
        # sshd reads authorized_keys as the logging-in user: the non-admin account cannot reach
        # the state dir when it sits under a 0700 directory (e.g. a checkout in /root), so the
        # device gets its own copy in its private /run/lock.
        mounts = [f"mount --bind {q(str(passwd))} /etc/passwd", "mount -t tmpfs nck-lock /run/lock",
                  f"cp {q(str(ddir / 'authorized_keys'))} {DEVICE_AUTHORIZED_KEYS}",
                  f"chmod 644 {DEVICE_AUTHORIZED_KEYS}"]
        if not device.lab.root_login:
            # sudo resolves the host's name on every call (a warning on stderr if it cannot).
            hosts = ddir / "hosts"
            hosts.write_text(Path("/etc/hosts").read_text() + f"127.0.1.1 {device.netns}\n")
            mounts += [f"mount --bind {q(str(self._sudoers(device, ddir)))} /etc/sudoers",
                       f"mount --bind {q(str(hosts))} /etc/hosts"]
        for rc in ("/root/.bashrc", "/root/.profile", "/root/.bash_profile", "/etc/bash.bashrc"):
            if Path(rc).exists():
                mounts.append(f"mount --bind {q(str(empty_rc))} {rc}")
        script = " && ".join(mounts + [f"exec {SSHD} -f {q(str(config))} -E {q(str(ddir / 'sshd.log'))}"])
        pidfile.unlink(missing_ok=True)
        # Its own UTS namespace too, so the device reports its own hostname in fingerprints.
        script = f"hostname {device.netns} && {script}"
        run("ip", "netns", "exec", device.netns, "unshare", "--uts", "sh", "-c", script)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip():
                return int(pidfile.read_text())
            time.sleep(0.02)
        log = (ddir / "sshd.log").read_text() if (ddir / "sshd.log").exists() else ""
        raise UsageError(f"lab: sshd for {device.name} did not start: {log.strip() or 'no log'}")

    @staticmethod
    def _sudo_account(device: Device) -> str:
        """The passwd line of the lab's sudo account ('*': no password; sudo never asks)."""
        if device.lab.root_login:
            return ""
        return f"{LAB_SUDO_USER}:*:{SUDO_UID}:{SUDO_UID}:neighcheck sudo account:/tmp:/bin/sh\n"

    @staticmethod
    def _sudoers(device: Device, ddir: Path) -> Path:
        """The device's /etc/sudoers: root, and the lab's sudo account without a password."""
        if not Path(SUDO).exists() or not Path("/etc/sudoers").exists():
            raise UsageError(f"lab: {device.name} has lab.root_login = false, which needs sudo on "
                             "this host: apt-get install sudo (scripts/install-deps does)")
        path = ddir / "sudoers"
        path.write_text("\n".join([
            "Defaults env_reset",
            'Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"',
            "root ALL=(ALL:ALL) ALL",
            f"{LAB_SUDO_USER} ALL=(ALL:ALL) NOPASSWD: ALL",
            "",
        ]))
        path.chmod(0o440)  # sudo refuses a sudoers file that others may write
        return path

    def restart_sshd(self, device: Device) -> int:
        """Stop the device's sshd and every session it serves, then start a fresh one
        (same host key). Fault-injection tests use it to drop connections."""
        with self._locked():
            state = self._load_state()
            record = state["devices"].get(device.name)
            if record is None:
                raise UsageError(f"lab: {device.name} is not up")
            self.kill_sshd(device)
            record["sshd_pid"] = self._start_sshd(device, Path(record["dir"]))
            self._save_state(state)
        self._wait_ssh(device)
        return record["sshd_pid"]

    def kill_sshd(self, device: Device) -> None:
        """Kill the device's sshd and its session processes, by pid (the device goes dark)."""
        pids = [int(p) for p in run("ip", "netns", "pids", device.netns, check=False).stdout.split()
                if p.isdigit() and _pid_alive(int(p), "sshd")]
        # All at once, sessions and listener together: the device goes dark in one step.
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            _kill(pid, timeout=1.0)  # waits until gone (SIGTERM to a dead pid is a no-op)

    @staticmethod
    def _session_env(device: Device, ddir: Path) -> list[str]:
        """SSH sessions on a Wine device find their prefix and wineserver through these."""
        if device.os != "windows":
            return []
        from harness.lab.wine import wine_env
        env = wine_env(ddir / "prefix", base={})
        return ["SetEnv " + " ".join(f'{k}="{v}"' for k, v in sorted(env.items()))]

    def _wait_ssh(self, device: Device, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((device.ssh.host, device.ssh.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise UsageError(f"lab: {device.name}'s sshd does not answer on "
                                     f"{device.ssh.host}:{device.ssh.port}") from None
                time.sleep(0.05)

    def _write_known_hosts(self, state: dict) -> None:
        lines = []
        for device in self.inventory.lab_devices:
            pub = self.dir / device.name / "ssh_host_ed25519_key.pub"
            if device.name in state["devices"] and pub.exists():
                kind, b64 = pub.read_text().split()[:2]
                host = device.ssh.host if device.ssh.port == 22 else f"[{device.ssh.host}]:{device.ssh.port}"
                lines.append(f"{host} {kind} {b64}\n")
        for path in {d.ssh.known_hosts for d in self.inventory.lab_devices}:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(lines))

    # --- down ------------------------------------------------------------------------
    def down(self) -> list[str]:
        """Remove every namespace, link, process and file the lab made; restore sysctls."""
        self.require_root()
        removed = []
        with self._locked():
            state = self._load_state()
            names = set(state["devices"]) | {d.name for d in self.inventory.lab_devices}
            for name in sorted(names):
                device = next((d for d in self.inventory.lab_devices if d.name == name), None)
                if self._teardown(name, device, state):
                    removed.append(name)
            for name, value in state.get("sysctls", {}).items():
                _sysctl_path(name).write_text(str(value))
            self._remove_lab_files()
        return removed

    def _remove_lab_files(self) -> None:
        """Only what the lab wrote: its keys, known_hosts, state file (device directories went
        with their devices); the directory itself only when nothing else is left in it."""
        for name in ("id_ed25519", "id_ed25519.pub", "known_hosts", "state.json", "state.tmp"):
            (self.dir / name).unlink(missing_ok=True)
        for device in self.inventory.lab_devices:
            if device.ssh.known_hosts.parent == self.dir:
                device.ssh.known_hosts.unlink(missing_ok=True)
            ddir = self.dir / device.name
            if ddir.is_dir():
                shutil.rmtree(ddir)
        try:
            self.dir.rmdir()
        except OSError:
            pass  # not empty: someone else's files, left alone

    def _teardown_device(self, device: Device, state: dict) -> None:
        self._teardown(device.name, device, state)

    def _teardown(self, name: str, device: Device | None, state: dict) -> bool:
        record = state["devices"].pop(name, None) or {}
        ns = record.get("netns") or f"nck-{name}"
        did = False
        ddir = Path(record.get("dir") or self.dir / name)
        pid = record.get("sshd_pid")
        if pid and _pid_alive(pid, str(ddir)):
            _kill(pid)
            did = True
        wine_pid = record.get("wineserver_pid")
        if wine_pid and record.get("wine_prefix") and Path(f"/proc/{wine_pid}").exists():
            from harness.lab.wine import stop_wineserver
            stop_wineserver(wine_pid, Path(record["wine_prefix"]))
            did = True
        if ns in _namespaces():
            # Whatever else still runs in the namespace (sshd's children, wineserver...).
            for line in run("ip", "netns", "pids", ns, check=False).stdout.split():
                if line.isdigit():
                    _kill(int(line), timeout=1.0)
        links = list(record.get("links", []))
        if device is not None and device.lab is not None:
            links += [device.lab.mgmt_harness_if] + [link.harness_if for link in device.links]
        for link in dict.fromkeys(links):
            if link.startswith("nck") and _link_exists(link):
                run("ip", "link", "del", link, check=False)  # deleting one end removes the peer
                did = True
        if ns in _namespaces():
            run("ip", "netns", "del", ns, check=False)
            did = True
        if ddir.exists():
            shutil.rmtree(ddir)
        return did

    # --- status ----------------------------------------------------------------------
    def _status(self, device: Device, state: dict) -> DeviceStatus:
        record = state["devices"].get(device.name, {})
        ddir = record.get("dir") or str(self.dir / device.name)
        links = {device.lab.mgmt_harness_if: _link_exists(device.lab.mgmt_harness_if)} if device.lab else {}
        links.update({link.harness_if: _link_exists(link.harness_if) for link in device.links})
        sshd = _pid_alive(record.get("sshd_pid"), ddir)
        if device.os == "windows":  # its Wine services must be up too
            sshd = sshd and _pid_alive(record.get("wineserver_pid"), "wineserver")
        return DeviceStatus(device.name, device.netns in _namespaces(), sshd, links)

    def status(self) -> list[DeviceStatus]:
        state = self._load_state()
        return [self._status(d, state) for d in self.inventory.lab_devices]

    def is_up(self, devices: tuple[Device, ...] | None = None) -> bool:
        state = self._load_state()
        devices = devices if devices is not None else self.inventory.lab_devices
        return all(self._status(d, state).up for d in devices if d.lab is not None)
