"""Host-global sysctls that labs raise, shared by every lab on the host.

The neighbor gc thresholds and the backlog are host-wide (a network namespace has none of its
own), and several labs may be up at once: the default lab, the tests' private labs, the
bench's. Each lab registers while it is up; the first one records the original values and
raises them, the last one down restores them. A lab that restored "its" originals while
another was still up would leave that one with 1,024 entries per family (it did: seeding then
failed in the other lab). A lab that crashed stays registered until its `lab down`; one whose
state directory is gone is dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

from harness.hostlock import host_lock

REGISTRY = Path("/run/neighcheck-sysctls.json")
LOCK = Path("/run/lock/nck-sysctls.lock")
SYSCTL_ROOT = Path("/proc/sys")


def sysctl_path(name: str) -> Path:
    """The /proc/sys file of a dotted sysctl name."""
    return SYSCTL_ROOT / name.replace(".", "/")


def _load() -> dict:
    try:
        data = json.loads(REGISTRY.read_text())
    except (OSError, ValueError):
        return {"originals": {}, "users": []}
    data["users"] = [u for u in data.get("users", []) if Path(u).is_dir()]  # drop vanished labs
    return data


def _save(data: dict) -> None:
    tmp = REGISTRY.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(REGISTRY)


def _locked():
    return host_lock(LOCK, 30, f"lab: another process holds {LOCK} for over 30 s")


def raise_for(user: Path, wanted: dict[str, int]) -> None:
    """Register `user` (a lab's state directory) and make each sysctl at least its wanted value,
    recording the original of each one raised while no lab was registered."""
    with _locked():
        data = _load()
        for name, value in wanted.items():
            path = sysctl_path(name)
            current = int(path.read_text())
            if current < value:
                data["originals"].setdefault(name, current)
                path.write_text(str(value))
        if str(user) not in data["users"]:
            data["users"].append(str(user))
        _save(data)


def release(user: Path) -> None:
    """Unregister `user`; the last lab down restores the recorded originals."""
    with _locked():
        data = _load()
        data["users"] = [u for u in data["users"] if u != str(user)]
        if data["users"]:
            _save(data)
            return
        for name, value in reversed(list(data["originals"].items())):  # undo in reverse order
            sysctl_path(name).write_text(str(value))
        REGISTRY.unlink(missing_ok=True)
