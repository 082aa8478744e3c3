"""The fast lane's verdict: forward this request straight upstream, or hand it to the full path.

Responsibility: for one request head, say whether it is the hot path (a cached ALLOWED record
whose request the full handler would forward unchanged, or in ``uem`` policy mode with only
the policy key swapped) and if so how its policy-key header goes upstream. It must never
forward what the full path would answer otherwise: every doubt is a hand-over, and the full
path (``handlers.activesync``) then does exactly what it always did. It does no I/O and reads
no clock (``now`` comes in); it counts the request on its record, as the gate does.

Theory of operation: ``HotPath.admit`` is one dict lookup on the device list after
``request_line.read_line`` (through the connection's memo). It hands over: anything but POST; an
unknown, UNKNOWN, BLOCKED or WIPED record (first access, waits, denials and wipes are the full
path's); in ``uem`` mode a Provision (answered by the gatekeeper), the base64 form and a
``PolicyKey`` query parameter (the key sits in the query and must be rebuilt), a body of unknown
or large size (a demand from the upstream must be replayable from memory), and a policy key that
is not byte for byte the current final key (the full path answers 142/144 or accepts a key with
leading zeros). The expected key is ``PolicyGate.final_key`` (an HMAC). A ``ConnectionMemo`` per
device connection keeps the last request line read and the last expected key, so a phone on a
keep-alive connection pays for either once, not on every request; in pass-through mode the memo
also keeps the line's verdict, a value every request of that line shares.
"""

from __future__ import annotations

from typing import Final

from activesync.provisioning import KEYLESS_COMMANDS
from activesync.query import parse_policy_key
from sentry_sim.device_list import DeviceList, State
from sentry_sim.gate import PolicyMode
from sentry_sim.lane.request_line import Line, read_line
from sentry_sim.policy_gate import PolicyGate
from sentry_sim.upstream_policy import UpstreamKeys

#: uem mode: request bodies up to this size stay on the hot path (kept for a replay when the
#: upstream demands provisioning); larger or chunked ones take the full path.
UEM_BODY_LIMIT: Final = 1024 * 1024

#: ``Verdict.policy_key`` when the request's X-MS-PolicyKey header goes upstream unchanged.
KEEP: Final = b"keep"


class ConnectionMemo:
    """What one device connection's last request taught the hot path: its request line (a
    phone repeats the same few) and, in uem mode, the final key expected of its record."""

    __slots__ = (
        "authorization",
        "expected",
        "line",
        "policy_version",
        "record",
        "target",
        "verdict",
        "version",
    )

    def __init__(self) -> None:
        self.target = b""
        self.version: bytes | None = None
        self.authorization: bytes | None = None
        self.line: Line | None = None
        self.record = ""
        self.policy_version = -1
        self.expected = b""
        #: pass_through mode: the verdict of ``line`` (a value: every request of it shares it).
        self.verdict: Verdict | None = None

    def read(
        self, target: bytes, version: bytes | None, authorization: bytes | None
    ) -> Line | None:
        """``request_line.read_line`` of these head fields, remembered for the next request."""
        if (
            target == self.target
            and version == self.version
            and authorization == self.authorization
        ):
            return self.line
        line = None
        if target.isascii():
            line = read_line(
                target.decode("ascii"),
                None if version is None else version.decode("latin-1"),
                None if authorization is None else authorization.decode("latin-1"),
            )
        self.target = target
        self.version = version
        self.authorization = authorization
        self.line = line
        self.verdict = None
        return line


class Verdict:
    """Forward upstream: the record, the command, and what to do with X-MS-PolicyKey."""

    __slots__ = ("command", "key", "policy_key")

    def __init__(self, key: str, command: str, policy_key: bytes) -> None:
        self.key = key
        self.command = command
        #: ``KEEP``; ``b""`` to drop the header; else the value to send (the upstream's key).
        self.policy_key = policy_key


class HotPath:
    """The hot-path rule over one gatekeeper's device list and policy state."""

    __slots__ = ("devices", "policy", "uem_mode", "upstream_keys")

    def __init__(
        self,
        devices: DeviceList,
        mode: PolicyMode,
        policy: PolicyGate,
        upstream_keys: UpstreamKeys,
    ) -> None:
        self.devices = devices
        self.uem_mode = mode is PolicyMode.UEM
        self.policy = policy
        self.upstream_keys = upstream_keys

    def admit(
        self,
        method: bytes,
        line: Line | None,
        policy_key: bytes | None,
        body_length: int | None,
        memo: ConnectionMemo,
        now: float,
    ) -> Verdict | None:
        """The verdict for a request head, or None to hand it to the full path. ``line`` is
        its reading (``ConnectionMemo.read``), ``body_length`` the Content-Length (0 without
        a body, None when chunked)."""
        if line is None or method != b"POST":
            return None
        record = self.devices.get(line.key)
        if record is None or record.state is not State.ALLOWED:
            return None
        if not self.uem_mode:
            record.requests += 1
            record.last_seen = now
            if memo.line is not line:
                return Verdict(line.key, line.command, KEEP)
            verdict = memo.verdict
            if verdict is None:
                verdict = memo.verdict = Verdict(line.key, line.command, KEEP)
            return verdict
        verdict = self._uem(line, record.policy_version, policy_key, body_length, memo)
        if verdict is not None:
            record.requests += 1
            record.last_seen = now
        return verdict

    def _uem(
        self,
        line: Line,
        policy_version: int,
        policy_key: bytes | None,
        body_length: int | None,
        memo: ConnectionMemo,
    ) -> Verdict | None:
        command = line.command
        if command == "Provision" or line.form != "plain" or line.policy_key_param:
            return None
        if body_length is None or body_length > UEM_BODY_LIMIT:
            return None
        if command.lower() in KEYLESS_COMMANDS:
            if policy_key is not None and parse_policy_key(policy_key.decode("latin-1")) is None:
                # query.parse_policy_key: a value that is not a decimal uint32 is no key at all.
                policy_key = None
        else:
            if policy_key is None:
                return None
            if memo.record != line.key or memo.policy_version != policy_version:
                memo.record = line.key
                memo.policy_version = policy_version
                memo.expected = str(self.policy.final_key(line.key, policy_version)).encode()
            if policy_key != memo.expected:
                return None
        # upstream_policy.upstream_line: where the device sent a key, the upstream's key of the
        # record takes its place, or none at all when none is known yet.
        if policy_key is None:
            return Verdict(line.key, command, b"")
        upstream = self.upstream_keys.get(line.key)
        return Verdict(line.key, command, b"" if upstream is None else str(upstream).encode())
