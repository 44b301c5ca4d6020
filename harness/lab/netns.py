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

Shapes a device may ask for in [device.lab] (issue 14):
- `bystanders = N`: each test link goes through a bridge in a namespace of its own
  (`nck-<device>-s<i>`: ports `nckport-h` to the harness, `nckport-d` to the device) with N more
  hosts on the segment (namespaces `nck-<device>-s<i>b<k>`, interface eth1, addresses from
  `lab_bystander_addresses`), as on a lab switch shared with other hosts.
- `userland = "busybox"`: the device's sessions see only busybox applets (PATH, the login
  shell, and busybox mounted over the real ip, awk, sh and bash in the sshd's mount namespace),
  as on an OpenWrt or Yocto image, plus `flock` (OpenWrt's busybox has that applet, Debian's
  build does not, so util-linux's stands in: the harness's device lock needs it).
A harness end without harness_v4/harness_v6 gets no such address (and no IPv6 at all without
harness_v6): seeding and answering never need one.

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
from harness.inventory import LAB_SUDO_USER, Device, Inventory, TestLink, lab_bystander_addresses
from harness.lab import sysctls

SSHD = "/usr/sbin/sshd"
DEVICE_AUTHORIZED_KEYS = "/run/lock/nck-authorized_keys"  # inside the device's mount namespace
UNPRIVILEGED_UID = 64999
SUDO_UID = 64998  # LAB_SUDO_USER, on devices with lab.root_login = false
SUDO = "/usr/bin/sudo"
# Values large enough for 16,384 entries per family on every link of several devices.
GC_THRESHOLDS = {"gc_thresh1": 262144, "gc_thresh2": 524288, "gc_thresh3": 1048576}


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


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie (a daemonised sshd's parent is the host's init,
    which may reap it late: waiting for /proc/<pid> to vanish cost 3 s per device)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _kill(pid: int, timeout: float = 3.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def switch_netns(device: Device, index: int) -> str:
    """The namespace of the bridge behind test link `index` (devices with bystanders)."""
    return f"{device.netns}-s{index}"


def bystander_netns(device: Device, index: int, k: int) -> str:
    return f"{switch_netns(device, index)}b{k}"


def extra_namespaces(device: Device) -> list[str]:
    """The namespaces a lab device has besides its own: a switch per link and its bystanders."""
    if device.lab is None or not device.lab.bystanders:
        return []
    return [name for i in range(len(device.links))
            for name in (switch_netns(device, i),
                         *(bystander_netns(device, i, k) for k in range(1, device.lab.bystanders + 1)))]


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
            return {"devices": {}, "created_dirs": []}
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
            sysctls.raise_for(self.dir, HOST_SYSCTLS)
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
        for i, link in enumerate(device.links):
            harness_addrs = [str(a) for a in (link.harness_v4, link.harness_v6) if a is not None]
            device_addrs = [str(a) for a in (link.device_v4, link.device_v6 if lab.ipv6 else None)
                            if a is not None]
            if lab.bystanders:
                self._bridged_link(device, i, link, record, state, harness_addrs, device_addrs)
            else:
                self._veth(ns, link.harness_if, link.device_if, record, state, harness_addrs, device_addrs)
        if device.os == "windows":
            self._start_wine(device, ddir, record, state)
        record["sshd_pid"] = self._start_sshd(device, ddir)
        self._save_state(state)

    def _start_wine(self, device: Device, ddir: Path, record: dict, state: dict) -> None:
        """A Windows lab device is Wine in the namespace: its own prefix (a hard-linked clone of
        a cached template) with nck-sshexec in it (how its Linux sshd hands commands to Wine's
        cmd.exe, see harness/lab/sshexec.c), and a persistent wineserver started inside the
        namespace before any SSH session, so Wine's services (which answer the network
        queries) live there."""
        from harness.lab import wine as winelab
        from harness.paths import cache_dir
        winelab.require_wine()
        template = cache_dir() / "prefix-template"
        winelab.prepare_prefix(template)
        prefix = ddir / "prefix"
        winelab.clone_prefix(template, prefix)
        record["wine_prefix"] = str(prefix)
        self._save_state(state)
        # cmd.exe as Windows OpenSSH runs it, for the device's `launcher` (sshexec.c)
        from harness.lab import sshexec
        record["sshexec"] = str(sshexec.install(prefix, sshexec.build(cache_dir() / "sshexec")))
        record["wineserver_pid"] = winelab.start_wineserver(device.netns, prefix)
        self._save_state(state)

    def _veth(self, ns: str, harness_if: str, device_if: str, record: dict, state: dict,
              harness_addrs: list[str], device_addrs: list[str]) -> None:
        if _link_exists(harness_if):
            raise UsageError(f"lab: a link named {harness_if} already exists on this host and "
                             "is not the lab's; rename it in devices.toml or delete it")
        record["links"].append(harness_if)
        self._save_state(state)
        # `name` keeps ip from reading a short name as a keyword (`d` is `dynamic`).
        run("ip", "link", "add", "name", harness_if, "type", "veth", "peer", "name", device_if, "netns", ns)
        self._harness_end(harness_if, harness_addrs)
        for addr in device_addrs:
            run("ip", "-n", ns, "addr", "add", addr, "dev", device_if, *(["nodad"] if ":" in addr else []))
        run("ip", "-n", ns, "link", "set", device_if, "up")

    @staticmethod
    def _harness_end(harness_if: str, harness_addrs: list[str]) -> None:
        # The harness side must not autoconfigure or answer for anything: it only carries
        # what the seeder and responder send. Without an IPv6 address of its own it gets no
        # IPv6 at all (not even a link-local): seeding and answering need none.
        knobs = {"accept_ra": "0", "accept_dad": "0", "autoconf": "0"}
        if not any(":" in addr for addr in harness_addrs):
            knobs["disable_ipv6"] = "1"
        for key, value in knobs.items():
            knob = Path("/proc/sys/net/ipv6/conf", harness_if, key)
            if knob.exists():  # absent when the host runs without IPv6
                knob.write_text(value)
        for addr in harness_addrs:
            run("ip", "addr", "add", addr, "dev", harness_if, *(["nodad"] if ":" in addr else []))
        run("ip", "link", "set", harness_if, "up")

    # --- a test link behind a bridge, with bystanders on the segment ------------------------
    def _bridged_link(self, device: Device, index: int, link: TestLink, record: dict, state: dict,
                      harness_addrs: list[str], device_addrs: list[str]) -> None:
        """harness_if -- [nckport-h  bridge  nckport-d] -- device_if, and nckport-b<k> to each
        bystander's eth1. The switch namespace has no IPv6 (a bridge with a link-local would
        talk on the segment); its bridge keeps the kernel's defaults (learning, MLD snooping)."""
        assert device.lab is not None
        switch = switch_netns(device, index)
        bystanders = [bystander_netns(device, index, k) for k in range(1, device.lab.bystanders + 1)]
        record.setdefault("namespaces", []).extend([switch, *bystanders])
        record["links"].append(link.harness_if)
        self._save_state(state)  # recorded before made
        run("ip", "netns", "add", switch)
        for scope in ("all", "default"):
            run("ip", "netns", "exec", switch, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        run("ip", "-n", switch, "link", "add", "name", "nckbr", "type", "bridge")
        run("ip", "link", "add", "name", link.harness_if, "type", "veth", "peer", "name", "nckport-h",
            "netns", switch)
        run("ip", "-n", switch, "link", "add", "name", "nckport-d", "type", "veth", "peer", "name",
            link.device_if, "netns", device.netns)
        ports = ["nckport-h", "nckport-d"]
        addresses = lab_bystander_addresses(link, device.lab.bystanders)
        for k, (ns, pair) in enumerate(zip(bystanders, addresses), start=1):
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", switch, "link", "add", "name", f"nckport-b{k}", "type", "veth", "peer",
                "name", "eth1", "netns", ns)
            for addr in filter(None, pair):
                run("ip", "-n", ns, "addr", "add", addr, "dev", "eth1", *(["nodad"] if ":" in addr else []))
            run("ip", "-n", ns, "link", "set", "eth1", "up")
            ports.append(f"nckport-b{k}")
        for port in ports:
            run("ip", "-n", switch, "link", "set", port, "master", "nckbr", "up")
        run("ip", "-n", switch, "link", "set", "nckbr", "up")
        self._harness_end(link.harness_if, harness_addrs)
        for addr in device_addrs:
            run("ip", "-n", device.netns, "addr", "add", addr, "dev", link.device_if,
                *(["nodad"] if ":" in addr else []))
        run("ip", "-n", device.netns, "link", "set", link.device_if, "up")

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
            *([f"SetEnv PATH={ddir / 'bin'}"] if device.lab and device.lab.userland == "busybox" else []),
            "",
        ]))
        empty_rc = ddir / "empty_rc"
        empty_rc.write_text("")
        passwd = ddir / "passwd"
        passwd.write_text(Path("/etc/passwd").read_text() +
                          f"nckuser:x:{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}:neighcheck unprivileged:/tmp:/bin/sh\n"
                          + self._sudo_account(device))
        busybox_mounts = self._busybox_userland(device, ddir, passwd)
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
        mounts += busybox_mounts
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
    def _busybox_userland(device: Device, ddir: Path, passwd: Path) -> list[str]:
        """For userland = "busybox": a directory of busybox applets (plus flock), made every
        account's login shell and PATH, and the mounts (inside the sshd's own mount namespace)
        that put busybox over the real ip, awk, sh and bash. Returns the mount commands."""
        if device.lab is None or device.lab.userland != "busybox":
            return []
        busybox = shutil.which("busybox")
        flock = shutil.which("flock")
        if busybox is None or flock is None:
            raise UsageError("lab: userland = \"busybox\" needs busybox and util-linux's flock on "
                             "this host: apt-get install busybox util-linux")
        bindir = ddir / "bin"
        bindir.mkdir(exist_ok=True)
        applets = run(busybox, "--list").stdout.split()
        for name in applets:
            (bindir / name).unlink(missing_ok=True)
            (bindir / name).symlink_to(busybox)
        (bindir / "flock").unlink(missing_ok=True)
        (bindir / "flock").symlink_to(flock)
        shell = str(bindir / "sh")
        lines = [":".join(f[:6] + [shell]) if len(f := line.split(":")) == 7 else line
                 for line in passwd.read_text().splitlines()]
        passwd.write_text("\n".join(lines) + "\n")
        q = shlex.quote
        mounts = []
        for tool in ("ip", "awk", "sh", "bash"):
            found = shutil.which(tool)
            if found:  # the real file: /bin/sh is a link to dash, awk to mawk
                mounts.append(f"mount --bind {q(busybox)} {q(os.path.realpath(found))}")
        return mounts

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
            sysctls.release(self.dir)  # the last lab on the host restores the originals
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
        extra = list(record.get("namespaces", [])) + (extra_namespaces(device) if device else [])
        present = _namespaces()
        for name in dict.fromkeys(extra):
            if name.startswith(f"{ns}-s") and name in present:
                run("ip", "netns", "del", name, check=False)  # no processes run in them
                did = True
        if ns in present:
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
        if device.os == "windows":  # its Wine services must be up too, and its nck-sshexec there
            sshd = sshd and _pid_alive(record.get("wineserver_pid"), "wineserver") and \
                Path(record.get("sshexec") or "/nonexistent").is_file()
        present = _namespaces()
        netns = device.netns in present and all(n in present for n in extra_namespaces(device))
        return DeviceStatus(device.name, netns, sshd, links)

    def status(self) -> list[DeviceStatus]:
        state = self._load_state()
        return [self._status(d, state) for d in self.inventory.lab_devices]

    def is_up(self, devices: tuple[Device, ...] | None = None) -> bool:
        state = self._load_state()
        devices = devices if devices is not None else self.inventory.lab_devices
        return all(self._status(d, state).up for d in devices if d.lab is not None)
