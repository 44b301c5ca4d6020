"""The Windows driver: upload with a checksum cache, and command-line quoting."""

from __future__ import annotations

import hashlib
import shutil

import pytest

from harness.errors import UsageError
from harness.ssh import SshSession
from harness.device.agent import make_agent
from harness.device.dialect import cmd_quote
from harness.device.windows import REMOTE_NAME, local_agent, upload_dir

needs_wine = pytest.mark.skipif(shutil.which("wine") is None or shutil.which("x86_64-w64-mingw32-gcc") is None,
                                reason="needs wine and mingw-w64 (make test installs them)")


def test_cmd_quote_leaves_plain_words_and_quotes_blanks():
    assert cmd_quote("flush") == "flush"
    assert cmd_quote(r"C:\Users\lab\neighcheck\neighcheck_agent.exe") == r"C:\Users\lab\neighcheck\neighcheck_agent.exe"
    assert cmd_quote(r"C:\Program Files\agent.exe") == r'"C:\Program Files\agent.exe"'


@pytest.mark.parametrize("word", ['a&b', 'x|y', '%PATH%', 'say"hi', 'a^b', 'a>b', 'a\nb', '!x!'])
def test_cmd_quote_refuses_what_cmd_exe_would_interpret(word):
    with pytest.raises(UsageError, match="cmd.exe"):
        cmd_quote(word)


@needs_wine
@pytest.mark.lab
def test_the_agent_is_uploaded_once_and_again_only_when_the_remote_copy_changed(default_lab):
    device = default_lab.device("win-wine")
    remote = upload_dir(device, default_lab) + "/" + REMOTE_NAME
    local = local_agent().read_bytes()
    from pathlib import Path
    remote_path = Path(remote)  # the Wine lab device shares this host's file system
    remote_path.unlink(missing_ok=True)
    with SshSession(device.name, device.ssh) as session:
        agent = make_agent(device, session, default_lab)
        assert hashlib.sha256(remote_path.read_bytes()).digest() == hashlib.sha256(local).digest()
        first = remote_path.stat().st_mtime_ns

        make_agent(device, session, default_lab)  # unchanged: nothing is uploaded
        assert remote_path.stat().st_mtime_ns == first

        remote_path.write_bytes(local[:-1] + bytes([local[-1] ^ 0xFF]))  # tampered after upload
        agent = make_agent(device, session, default_lab)
        assert remote_path.read_bytes() == local  # replaced, never run stale
        assert agent.info()["agent"].startswith("neighcheck-windows-agent/")
        # Under a launcher (Wine's sshd is a POSIX one) words are quoted for sh, not cmd.exe.
        assert agent.command_line("flush", 2, 3).startswith("wine ")
