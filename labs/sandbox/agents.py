"""The host's side of an in-sandbox agent (platform/sandbox/agent.py): one long-lived `docker exec` per user.

A request is written on the exec's standard input and the reply read from its multiplexed output stream, so a
command costs a round trip through the engine's already-open stream instead of a new `docker exec` (~100 ms).
The agent of the learner runs as the learner and can be killed by the learner's code: the caller treats a lost
agent as the command's doing and starts another; it never trusts a reply for more than the submission could
claim about itself (lengths are checked against the cap before anything is read).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import docker

AGENT = "/opt/shipshape/agent.py"
MAX_REPLY_HEADER = 64 * 1024


class AgentLost(Exception):
    """The agent's stream ended or broke (the agent was killed, or the container is gone)."""


class AgentTimeout(Exception):
    """No reply before the host's deadline."""


class AgentBroken(Exception):
    """The reply did not follow the protocol (only a tampered agent sends one)."""


@dataclass
class AgentReply:
    header: dict[str, Any]
    stdout: bytes
    stderr: bytes


class AgentConnection:
    """One agent: requests go one at a time (the caller holds the sandbox)."""

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._raw: socket.socket = getattr(sock, "_sock", sock)
        self._stdout = bytearray()  # demultiplexed stdout not consumed yet
        self._frames = b""  # multiplexed bytes not demultiplexed yet
        self.closed = False

    @classmethod
    def start(
        cls, api: docker.APIClient, container_id: str, *, user: str, env: dict[str, str], sweep: bool
    ) -> AgentConnection:
        argv = ["python3", "-I", "-S", AGENT, *(["--sweep"] if sweep else [])]
        exec_id = api.exec_create(
            container_id, argv, stdin=True, stdout=True, stderr=True, user=user, environment=env, workdir="/work"
        )["Id"]
        return cls(api.exec_start(exec_id, socket=True))

    def idle_is_broken(self) -> bool:
        """True when the idle stream has anything to read: an idle agent writes nothing, so that is its end."""
        if self.closed:
            return True
        try:
            self._raw.settimeout(0)
            self._raw.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            with contextlib.suppress(OSError):
                self._raw.settimeout(None)
        # An ended stream (b"") or stray bytes: either way the agent is not the idle agent it was.
        return True

    def call(self, header: dict[str, Any], payload: bytes = b"", *, deadline: float, cap: int) -> AgentReply:
        """Send one request and wait for its reply until `deadline` (time.monotonic())."""
        if self.closed:
            raise AgentLost("the agent is gone")
        encoded = json.dumps({**header, "stdin_len": len(payload)}).encode()
        try:
            self._raw.settimeout(max(0.01, deadline - time.monotonic()))
            self._raw.sendall(struct.pack(">I", len(encoded)) + encoded + payload)
        except TimeoutError as exc:
            raise AgentTimeout("the agent did not take the request in time") from exc
        except OSError as exc:
            self.close()
            raise AgentLost(f"could not reach the agent: {exc}") from exc
        (length,) = struct.unpack(">I", self._read(4, deadline))
        if length > MAX_REPLY_HEADER:
            self.close()
            raise AgentBroken(f"a reply header of {length} bytes")
        try:
            reply = json.loads(self._read(length, deadline))
            out_len, err_len = int(reply["stdout_len"]), int(reply["stderr_len"])
        except (ValueError, KeyError, TypeError) as exc:
            self.close()
            raise AgentBroken(f"an unreadable reply header: {exc}") from exc
        if not (0 <= out_len <= cap + 1 and 0 <= err_len <= cap + 1):
            self.close()
            raise AgentBroken(f"output lengths {out_len}/{err_len} beyond the cap of {cap}")
        stdout = self._read(out_len, deadline)
        stderr = self._read(err_len, deadline)
        return AgentReply(reply, stdout, stderr)

    def _read(self, size: int, deadline: float) -> bytes:
        while len(self._stdout) < size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AgentTimeout("no reply from the agent in time")
            try:
                self._raw.settimeout(remaining)
                chunk = self._raw.recv(1 << 16)
            except TimeoutError as exc:
                raise AgentTimeout("no reply from the agent in time") from exc
            except OSError as exc:
                self.close()
                raise AgentLost(f"the agent's stream broke: {exc}") from exc
            if not chunk:
                self.close()
                raise AgentLost("the agent's stream ended")
            self._demultiplex(chunk)
        data = bytes(self._stdout[:size])
        del self._stdout[:size]
        return data

    def _demultiplex(self, chunk: bytes) -> None:
        # docker's exec stream without a TTY: 8-byte frame headers (stream, 0, 0, 0, u32 size). The agent's
        # stderr (stream 2) carries only its own crash reports: dropped, the reply protocol is on stdout.
        buffer = self._frames + chunk
        while len(buffer) >= 8:
            stream, size = buffer[0], struct.unpack(">I", buffer[4:8])[0]
            if len(buffer) < 8 + size:
                break
            if stream == 1:
                self._stdout += buffer[8 : 8 + size]
            buffer = buffer[8 + size :]
        self._frames = buffer

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self._sock.close()
