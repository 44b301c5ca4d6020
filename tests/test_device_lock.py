"""The on-device lock's commands (the Linux one runs for real in tests/test_faults.py)."""

from __future__ import annotations

import base64
import shlex

from harness.device.dialect import PosixDialect, WindowsDialect
from harness.device.lock import DeviceLock


class _Session:
    device_name = "dut"


def test_windows_lock_is_one_encoded_powershell_command_with_the_holder_escaped():
    lock = DeviceLock(_Session(), WindowsDialect(), "host1 pid 7 run it's-mine", 12)
    argv = lock.command().split()
    assert argv[:4] == ["powershell", "-NoProfile", "-NonInteractive", "-EncodedCommand"]
    assert len(argv) == 5  # nothing for cmd.exe to interpret: one base64 word
    script = base64.b64decode(argv[4]).decode("utf-16-le")
    assert "-Value 'host1 pid 7 run it''s-mine'" in script  # PowerShell's quote doubling
    assert "AddSeconds(12)" in script and "'None'" in script and "exit 75" in script
    assert "'locked'" in script and "ReadToEnd" in script


def test_posix_lock_quotes_the_holder_for_sh():
    lock = DeviceLock(_Session(), PosixDialect(), "h; rm -rf / #", 5)
    words = shlex.split(lock.command())
    assert words[:2] == ["sh", "-c"] and len(words) == 3
    inner = shlex.split(words[2].split("printf '%s\\n' ", 1)[1].split(" > ", 1)[0])
    assert inner == ["h; rm -rf / #"]
    assert "flock -w 5 9" in words[2]
