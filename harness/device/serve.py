"""Serve mode: one long-lived agent process per device session (agent protocol extension).

Per-call mode starts a shell (and on Windows cmd.exe and the agent) for every verb; on a
fast link that start-up is most of a call. An agent whose `info` says `"serve": true` also
runs as `AGENT serve`: it reads one request per line on stdin, `@ID VERB ARGS...`, and
writes exactly one JSON object per line, flushed, with `"id": "ID"`, until EOF.

What can go wrong, and what the caller sees (never a hang, never a wrong reply):
- the process is gone before a request (it ended, its channel or connection closed): a new
  one is started, transparently; nothing was sent yet;
- it ends before answering: a read-only verb is asked once more on a new process; a verb
  that may have changed the table is an AgentError (whether it ran is unknown), as a
  command that may have run is never retried behind the caller's back (harness.ssh);
- no reply within the request's timeout: DeviceError naming the verb; the process is
  abandoned (its channel closed) and the next request starts a new one. The session is
  marked timed out, so the device under test checks that the device still answers;
- a reply that is not one JSON object, or does not carry the request's id: AgentError, and
  the process is abandoned (the stream is out of step);
- `"exit": N` in a reply: what a run of its own would have exited with (a bad argument):
  AgentError, as a non-zero exit is in per-call mode. The process goes on serving.
"""

from __future__ import annotations

import json
import select
import time
from typing import Any

import paramiko

from harness.errors import AgentError, DeviceError
from harness.ssh import MAX_OUTPUT, SshSession

STDERR_TAIL = 2048  # bytes of the serve process's stderr kept for error messages
MAX_BANNER = 64 << 10  # bytes a device may print before a serve process's first reply


class ServeChannel:
    """One agent process in serve mode, on a channel of the device's SSH session."""

    def __init__(self, session: SshSession, command: str, device_name: str, *,
                 before_replies: list[tuple[str, str]] | None = None):
        self.session = session
        self.command = command
        self.device_name = device_name
        # (what, text) for output a new process's channel carried before its first reply
        self.before_replies = before_replies if before_replies is not None else []
        self._channel: paramiko.Channel | None = None
        self._fresh = False  # no reply read from this process yet
        self._not_replies = ""  # what a new process printed so far that was no reply
        self._buffer = bytearray()
        self._stderr = bytearray()
        self._next_id = 0
        self.starts = 0  # serve processes started (restarts show here)
        self.requests = 0

    # --- the process -------------------------------------------------------------------
    def _alive(self) -> bool:
        channel = self._channel
        if channel is None or channel.closed or channel.eof_received or channel.exit_status_ready():
            return False
        transport = channel.get_transport()
        return transport is not None and transport.is_active()

    def _start(self) -> paramiko.Channel:
        self.close()
        channel = self.session.open_channel()
        try:
            channel.exec_command(self.command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            raise DeviceError(f"device {self.device_name!r}: cannot start the agent in serve mode: "
                              f"{exc}") from None
        self._channel = channel
        self._buffer.clear()
        self._stderr.clear()
        self._fresh, self._not_replies = True, ""
        self.starts += 1
        return channel

    def close(self) -> None:
        """End the process: EOF on its stdin, and the channel closed (a hung one is abandoned)."""
        channel, self._channel = self._channel, None
        if channel is not None:
            try:
                channel.shutdown_write()
            except (paramiko.SSHException, EOFError, OSError):
                pass
            channel.close()

    # --- requests ----------------------------------------------------------------------
    def request(self, words: list[str], timeout: float, *, retry: bool) -> dict[str, Any]:
        """Send one request and return its reply (without `id`). `retry`: the verb only reads,
        so it may be asked again on a new process if this one ends before answering."""
        reply = self.pipeline([words], timeout, retry=retry)[0]
        if isinstance(reply, AgentError):
            raise reply
        return reply

    def pipeline(self, requests: list[list[str]], timeout: float, *,
                 retry: bool) -> list[dict[str, Any] | AgentError]:
        """Send several requests at once and read their replies in order: one round trip for
        all (the ids keep them apart). Each reply must come within `timeout` of the one before.
        A reply that is an agent error (an `exit`) is returned in its place, so that the
        stream stays in step; everything else that goes wrong raises, as for one request.
        `retry`: every verb only reads, so the batch may be sent again on a new process."""
        shown = [" ".join(words) for words in requests]
        for attempt in (1, 2):
            channel = self._channel if self._alive() else self._start()
            ids = [str(self._next_id + n) for n in range(1, len(requests) + 1)]
            self._next_id += len(requests)
            replies: list[dict[str, Any] | AgentError] = []
            try:
                channel.sendall("".join(f"@{rid} {line}\n" for rid, line in zip(ids, shown)).encode())
                for rid, line in zip(ids, shown):
                    deadline = time.monotonic() + timeout
                    text = self._read_line(channel, deadline, timeout, line)
                    if self._fresh:
                        text = self._past_banner(channel, text, rid, deadline, timeout, line)
                    try:
                        replies.append(self._reply(text, rid, line))
                    except _Exited as exited:
                        replies.append(AgentError(str(exited)))
                    self.requests += 1
            except _Ended as ended:
                self.close()
                if retry and attempt == 1:
                    continue
                why = "" if retry else "; whether it ran is unknown"
                which = shown[len(replies)]
                raise AgentError(f"device {self.device_name!r}: agent `{which}` (serve mode): the "
                                 f"agent process ended before it answered ({ended}){why}") from None
            except BaseException:
                # Interrupted with replies outstanding (Ctrl-C, a timeout, a broken reply): the
                # next line this process prints may answer an abandoned request. A new
                # process for the next call (cleanup after a Ctrl-C) keeps it in step.
                self.close()
                raise
            return replies
        raise AssertionError("unreachable")

    def _past_banner(self, channel: paramiko.Channel, text: bytes, rid: str, deadline: float,
                     timeout: float, shown: str) -> bytes:
        """A new process's first reply, the line that carries the request's id. What comes
        before it was printed before the agent ran (a login shell's banner or motd, as on
        every SSH command of some devices): kept apart (before_replies), never parsed as a
        reply. Per call, protocol.split_reply does the same."""
        lines: list[str] = []
        while not _carries_id(text, rid):
            lines.append(text.decode(errors="replace"))
            self._not_replies = "\n".join(lines)
            if len(self._not_replies) > MAX_BANNER:
                self.close()
                raise AgentError(f"device {self.device_name!r}: agent `{shown}` (serve mode) printed more "
                                 f"than {MAX_BANNER >> 10} KiB before its first reply: "
                                 f"{self._not_replies[:200]!r}")
            text = self._read_line(channel, deadline, timeout, shown)
        self._fresh, self._not_replies = False, ""
        if lines:
            self.before_replies.append(("serve", "\n".join(lines).strip()))
        return text

    def _read_line(self, channel: paramiko.Channel, deadline: float, timeout: float,
                   shown: str) -> bytes:
        buffer = self._buffer
        scanned = 0
        while True:
            newline = buffer.find(b"\n", scanned)
            if newline >= 0:
                line = bytes(buffer[:newline])
                del buffer[:newline + 1]
                return line
            scanned = len(buffer)
            if scanned > MAX_OUTPUT:
                self.close()
                raise AgentError(f"device {self.device_name!r}: agent `{shown}` (serve mode) printed "
                                 f"more than {MAX_OUTPUT >> 20} MiB without a newline; stopped it")
            try:
                if channel.recv_ready():
                    buffer += channel.recv(1 << 20)
                    continue
                if channel.recv_stderr_ready():
                    # Drained as it comes: unread stderr would fill the channel's window and
                    # stall the agent; the tail is kept to say why a process ended.
                    self._stderr += channel.recv_stderr(65536)
                    del self._stderr[:-STDERR_TAIL]
                    continue
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise _Ended(f"connection lost: {exc}") from None
            if channel.eof_received or channel.closed:
                raise _Ended(self._how_it_ended(channel))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                printed = self._not_replies
                self.close()
                self.session.timed_out = True  # the device under test checks it still answers
                raise DeviceError(f"device {self.device_name!r}: agent `{shown}` gave no reply within "
                                  f"{timeout:g} s (serve mode); its process was abandoned, the next "
                                  "call starts a new one"
                                  + (f"; before it, the process printed: {printed[:200]!r}" if printed else ""))
            select.select([channel], [], [], min(remaining, 1.0))

    def _how_it_ended(self, channel: paramiko.Channel) -> str:
        transport = channel.get_transport()
        if not channel.exit_status_ready() and (transport is None or not transport.is_active()):
            return "the connection dropped"
        # The exit status follows EOF closely; a moment's wait for it, bounded.
        status = channel.recv_exit_status() if channel.status_event.wait(1.0) else None
        err = self._stderr.decode(errors="replace").strip()
        tail = self._buffer.decode(errors="replace").strip()
        parts = [f"exit {status}" if status is not None else "no exit status"]
        if err:
            parts.append(f"stderr: {err[-300:]}")
        if tail:
            parts.append(f"unfinished output: {tail[:200]!r}")
        return "; ".join(parts)

    def _reply(self, line: bytes, rid: str, shown: str) -> dict[str, Any]:
        where = f"device {self.device_name!r}: agent `{shown}` (serve mode)"
        text = line.decode(errors="replace").strip()
        try:
            reply = json.loads(text)
        except ValueError:
            self.close()
            raise AgentError(f"{where} printed a line that is not one JSON object: {text[:200]!r}") from None
        if not isinstance(reply, dict):
            self.close()
            raise AgentError(f"{where} printed JSON that is not an object: {text[:200]!r}")
        got = reply.pop("id", None)
        if got != rid:
            # Out of step (a late reply to an earlier request, or a reply without its id):
            # nothing more this process prints can be matched to a request.
            self.close()
            said = f"id {got!r}" if got is not None else "no id"
            raise AgentError(f"{where}: the reply does not belong to the request (it carries {said}, "
                             f"the request was @{rid}): {text[:200]!r}")
        status = reply.pop("exit", 0)
        if status != 0:
            raise _Exited(f"{where} exited {status}: {text[:300]}")
        return reply


def _carries_id(line: bytes, rid: str) -> bool:
    """Is `line` a JSON object with "id": rid?"""
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("id") == rid


class _Ended(Exception):
    """The serve process ended (or its connection dropped) before a reply was complete."""


class _Exited(AgentError):
    """A reply that says its verb would have exited non-zero: an agent error for that request
    alone (the process goes on serving)."""
