"""6. Agent verbs, one round trip each, as the harness makes them: its agent in serve mode
(one resident agent process per session; harness/device/serve.py), per call (a command, a
shell and the agent started for every verb: the Linux shim parsed again, Wine started
again), and the per-call command through an OpenSSH ControlMaster. Verbs: the no-op `ping`,
and a `table` read of TABLE_ENTRIES entries (the table is topped up with static entries on
a test link for the measurement, and they are removed after). On the reference device, and
on the inventory's Windows device (win-wine) when it has one."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.bench.rtt import OpenSsh, reference_lock
from harness.bench.settings import Settings
from harness.bench.stats import Target, paired_ratio, rotate, summarize
from harness.contract.status import Outcome
from harness.errors import AgentError, DeviceError

TABLE_ENTRIES = 20
SERVE, PER_CALL, CONTROL_MASTER = "serve (resident agent)", "per call (harness)", "per call via OpenSSH ControlMaster"
TOP_UP_PREFIX = "203.0.113."  # TEST-NET-3: never a seed, a static or a lab address


class _AgentContender:
    def __init__(self, device, inventory, serve: bool):
        from harness.ssh import SshSession
        self.name = SERVE if serve else PER_CALL
        self.device, self.inventory, self.serve = device, inventory, serve
        self.session = SshSession(device.name, device.ssh)
        self.agent = None

    def open(self) -> None:
        from harness.device.agent import make_agent
        self.session.connect()
        self.agent = make_agent(self.device, self.session, self.inventory, serve=self.serve)
        self.agent.info()
        if self.serve and self.agent.mode != "serve":
            raise DeviceError(f"bench: the agent of {self.device.name!r} does not offer serve mode")

    def call(self, words: list[str]) -> dict:
        return self.agent.call(*words)

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
        self.session.close()


class _ControlMasterContender:
    name = CONTROL_MASTER

    def __init__(self, device, command_line: Callable[..., str], control_dir: Path):
        self.ssh = OpenSsh(device, control_dir)
        self.command_line = command_line

    def open(self) -> None:
        self.ssh.open()

    def call(self, words: list[str]) -> dict:
        out = self.ssh.run(self.command_line(*words))
        try:
            return json.loads(out)
        except ValueError:
            raise DeviceError(f"bench: {self.name}: `{' '.join(words)}` printed no JSON: {out[:120]!r}") from None

    def close(self) -> None:
        self.ssh.close()


def bench_verbs(device, inventory, settings: Settings, log: Callable[[str], None]) -> dict:
    """Round trips of `ping` and `table` on `device`, contenders alternating (stats.rotate)."""
    serve = _AgentContender(device, inventory, serve=True)
    per_call = _AgentContender(device, inventory, serve=False)
    control_dir = Path(tempfile.mkdtemp(prefix="nckP-vcm-"))  # short: a unix socket path
    contenders: list[Any] = [serve, per_call]
    opened: list[Any] = []
    planted: list[tuple[int, int, str]] = []
    try:
        for contender in contenders:
            contender.open()
            opened.append(contender)
        if device.ssh.login.key_file is not None:  # the OpenSSH client needs a key file
            master = _ControlMasterContender(device, serve.agent.command_line, control_dir)
            master.open()
            opened.append(master)
            contenders.append(master)
        family = 0 if serve.agent.table(0).status.outcome is Outcome.SUCCESS else 2
        planted = _top_up(serve.agent, family)
        entries = len(serve.agent.table(family).entries)
        verbs = {"ping": ["ping"], "table": ["table", str(family)]}
        samples = {v: {c.name: [] for c in contenders} for v in verbs}
        for _ in range(settings.verb_warmup):
            for contender in contenders:
                for words in verbs.values():
                    contender.call(words)
        for round_no in range(settings.verb_rounds):
            for contender in rotate(contenders, round_no):
                for verb, words in verbs.items():
                    t0 = time.perf_counter()
                    reply = contender.call(words)
                    samples[verb][contender.name].append(time.perf_counter() - t0)
                    _check(contender.name, verb, reply)
        starts = serve.agent.serve_starts
    finally:
        if planted:
            try:
                for family_, ifindex, address in planted:
                    serve.agent.delete(family_, ifindex, address)
            except DeviceError as exc:
                log(f"verbs: could not remove the {len(planted)} entries planted for the table read: {exc}")
        for contender in opened:
            contender.close()
        shutil.rmtree(control_dir, ignore_errors=True)
    log(f"verbs: {settings.verb_rounds} rounds x {len(contenders)} contenders on {device.name}")
    result: dict[str, Any] = {"device": device.name, "os": device.os, "rounds": settings.verb_rounds,
                              "table_family": family, "table_entries": entries,
                              "serve_processes": starts, "verbs": {}}
    for verb in verbs:
        rows = {}
        for contender in contenders:
            mine = samples[verb][contender.name]
            rows[contender.name] = {"seconds": summarize(mine), "samples": mine,
                                    "vs_serve": paired_ratio(mine, samples[verb][SERVE])}
        result["verbs"][verb] = rows
    return result


def _top_up(agent, family: int) -> list[tuple[int, int, str]]:
    """Static entries on the first test link until `table FAMILY` shows TABLE_ENTRIES (none
    where the agent cannot add them: the read is then measured at the size the table has)."""
    if not agent.device.links:
        return []
    have = len(agent.table(family).entries)
    link = agent.device.links[0].device_if
    ifindex = next((i["index"] for i in agent.interfaces() if i.get("name") == link), None)
    planted = []
    for n in range(max(0, TABLE_ENTRIES - have)):
        address = f"{TOP_UP_PREFIX}{10 + n}"
        try:
            reply = agent.add(2, ifindex, address, f"02:00:5e:71:00:{10 + n:02x}")
        except AgentError:
            break
        if reply.outcome is not Outcome.SUCCESS:
            break  # e.g. no CreateIpNetEntry2 (Wine): measured as it is
        planted.append((2, ifindex, address))
    return planted


def _check(who: str, verb: str, reply: dict) -> None:
    if verb == "ping" and reply.get("pong") is not True:
        raise DeviceError(f"bench: {who}: `ping` did not answer pong: {reply}"[:200])
    if verb == "table" and not isinstance(reply.get("entries"), list):
        raise DeviceError(f"bench: {who}: `table` reply has no entries list"[:200])


def windows_device(inventory):
    """The inventory's first Windows device, or None."""
    return next((d for d in inventory.devices if d.os == "windows"), None) if inventory else None


def bench_all_verbs(reference, inventory, settings: Settings, log: Callable[[str], None]) -> dict:
    """Verbs on the reference device and on the inventory's Windows device, each under its lock."""
    out = {}
    for device in (reference, windows_device(inventory)):
        if device is None:
            continue
        with reference_lock(device, inventory=inventory):
            out[device.name] = bench_verbs(device, inventory, settings, log)
    return {"reference": reference.name, "devices": out}


def verb_targets(verbs: dict | None) -> list[Target]:
    if not verbs:
        return []
    targets = []
    for name, row in verbs["devices"].items():
        ping, table = row["verbs"]["ping"], row["verbs"]["table"]
        if row["os"] == "windows":
            for verb, rows in (("ping", ping), ("table", table)):
                targets.append(Target(f"verbs on {name}: `{verb}` serve, warm", _median(rows[SERVE]["seconds"], 1e3),
                                      5, "<=", " ms"))
            continue
        targets.append(Target(f"verbs on {name}: `ping` serve", _median(ping[SERVE]["seconds"], 1e3), 1.5, "<=", " ms"))
        targets.append(Target(f"verbs on {name}: `table` ({row['table_entries']} entries) serve",
                              _median(table[SERVE]["seconds"], 1e3), 4, "<=", " ms"))
        for verb, rows in (("ping", ping), ("table", table)):
            master = rows.get(CONTROL_MASTER)
            targets.append(Target(f"verbs on {name}: `{verb}` ControlMaster / serve",
                                  master["vs_serve"]["median"] if master else None, 8, ">=", "x",
                                  "" if master else "no key file for the OpenSSH client"))
    return targets


def _median(stats: dict, scale: float) -> float | None:
    return stats["median"] * scale if stats.get("median") is not None else None
