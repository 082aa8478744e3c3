"""A scenario run as a Mermaid sequence diagram: phones, gatekeeper(s), UEM and Exchange.

Responsibility: draw each ``ScenarioResult``'s trace (``scenarios.runner.TraceEntry``: the
events of the gatekeepers and the UEM, the phones' exchanges, the runner's narration) as the
arrows of DESIGN.md section 2: a phone's request to its gatekeeper, the report to the UEM and
its answer, pushes and resyncs, forwarding to Exchange, the answer the phone got; narration,
clock advances and failed expectations as notes. Pure: no I/O.

Theory of operation: one pass over the trace maps each entry to zero or more diagram lines;
runs of the same line (a resync every 5 minutes of a long advance) become one line with a
count; a diagram stops after ``MAX_LINES`` lines with a note saying how many were left out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from scenarios.runner import ScenarioResult, TraceEntry

#: The most lines one diagram gets (a very long run is cut with a note).
MAX_LINES: Final = 600

_UNSAFE = re.compile(r"[;#\n\r]")
_ID = re.compile(r"[^A-Za-z0-9_]")


def _text(value: object) -> str:
    text = _UNSAFE.sub(" ", str(value)).strip()
    return text if len(text) <= 90 else text[:87] + "..."


def _device_id(name: str) -> str:
    return "d_" + _ID.sub("_", name)


class _Diagram:
    def __init__(self, result: ScenarioResult) -> None:
        self.result = result
        self.lines: list[str] = []
        self.by_key: dict[str, str] = {}
        for name in result.devices:
            self.by_key[name] = _device_id(name)
        self.gk_by_id = {gid: self._gk(n + 1) for n, gid in enumerate(result.gatekeeper_ids)}
        self.device_gk = dict(result.device_gatekeepers)

    @staticmethod
    def _gk(number: int) -> str:
        return "Sentry" if number == 1 else f"Sentry{number}"

    def _who(self, record: str) -> str:
        return self.result.record_names.get(record.lower(), record)

    def _phone(self, record: str) -> str | None:
        name = self.result.record_names.get(record.lower())
        return None if name is None else _device_id(name)

    def _actor_gk(self, actor: str) -> str:
        suffix = actor.removeprefix("gatekeeper")
        return self._gk(int(suffix) if suffix else 1)

    def entry(self, e: TraceEntry) -> list[str]:
        f = e.fields
        if e.actor == "runner":
            return self._runner(e.name, f)
        if e.actor == "device":
            name = str(f["device"])
            gk = self._gk(self.device_gk.get(name, 1))
            eas = f" Status {f['eas_status']}" if f.get("eas_status") is not None else ""
            http = f"HTTP {f['http_status']}" if f.get("http_status") else "no answer"
            return [f"{gk}-->>{_device_id(name)}: {_text(f['label'])}: {http}{eas}"]
        if e.actor == "uem":
            return self._uem(e.name, f)
        return self._gatekeeper(self._actor_gk(e.actor), e.name, f)

    def _runner(self, name: str, f: Mapping[str, Any]) -> list[str]:
        if name == "say":
            return [f"Note over Sentry,UEM: {_text(f['title'])}"]
        if name == "advance":
            return [f"Note over Sentry,UEM: clock: {_text(f['title'])}"]
        if name.endswith(("_down", "_up")) or name in ("resync", "compliance_check"):
            return [f"Note over Sentry,Exchange: {_text(f['title'])}"]
        if name == "failure":
            return [
                f"Note over Sentry,UEM: FAILED {_text(f['path'])}: expected "
                f"{_text(f['expected'])}, got {_text(f['actual'])}"
            ]
        return []

    def _gatekeeper(self, gk: str, name: str, f: Mapping[str, Any]) -> list[str]:
        record = str(f.get("record", ""))
        who = _text(self._who(record))
        rules: dict[str, Callable[[], list[str]]] = {
            "RequestReceived": lambda: (
                [f"{phone}->>{gk}: {_text(f['command'])}"]
                if (phone := self._phone(record))
                else [f"Note over {gk}: {_text(f['command'])} of {who}"]
            ),
            "DeviceFirstSeen": lambda: [f"Note over {gk}: {who} first seen: UNKNOWN"],
            "ReportSent": lambda: [
                f"{gk}->>UEM: report {who}",
                f"UEM-->>{gk}: {_text(f['state'])}",
            ],
            "ReportFailed": lambda: [f"{gk}-xUEM: report {who} failed"],
            "DecisionApplied": lambda: (
                [f"Note over {gk}: {who} {_text(f['state']).upper()} (fallback)"]
                if f.get("source") == "fallback"
                else []
            ),
            "PushReceived": lambda: [f"UEM->>{gk}: push ({f['changes']} change(s))"],
            "ResyncCompleted": lambda: (
                []
                if f.get("mode") == "pull"
                else [f"{gk}->>UEM: resync", f"UEM-->>{gk}: {f['changes']} change(s)"]
            ),
            "ResyncFailed": lambda: [f"{gk}-xUEM: resync failed"],
            "RequestForwarded": lambda: [
                f"{gk}->>Exchange: {_text(f['command'])}",
                f"Exchange-->>{gk}: HTTP {f['upstream_status']}",
            ],
            "UpstreamFailed": lambda: [f"{gk}-xExchange: {_text(f['command'])} failed"],
        }
        make = rules.get(name)
        return make() if make is not None else []

    def _uem(self, name: str, f: Mapping[str, Any]) -> list[str]:
        record = f"{f.get('mailbox', '')}/{f.get('device_id', '')}"
        who = _text(self._who(record))
        if name == "DecisionChanged":
            if f.get("removed"):
                return [f"Note over UEM: {who} removed"]
            reasons = ", ".join(f.get("reason_names", ())) or "no reasons"
            return [f"Note over UEM: {who} -> {_text(f['state'])} ({_text(reasons)})"]
        if name == "AdminChanged":
            return [f"Note over UEM: admin: {_text(f['what'])} {_text(f['target'])}"]
        if name == "DeviceCheckedIn":
            phone = self._phone(record)
            return [f"{phone}->>UEM: MDM check-in"] if phone else []
        if name == "PushFailed":
            gk = self.gk_by_id.get(str(f.get("gatekeeper_id")), "Sentry")
            return [f"UEM-x{gk}: push failed"]
        return []

    def render(self) -> list[str]:
        result = self.result
        out = ["sequenceDiagram"]
        for name in result.devices:
            out.append(f"    participant {_device_id(name)} as {_text(name)}")
        for number in range(1, result.gatekeepers + 1):
            label = "Sentry" if number == 1 else f"Sentry {number}"
            out.append(f"    participant {self._gk(number)} as {label}")
        out += ["    participant UEM", "    participant Exchange"]
        body: list[str] = []
        for entry in result.trace:
            body += self.entry(entry)
        collapsed = _collapse(body)
        if len(collapsed) > MAX_LINES:
            left = len(collapsed) - MAX_LINES
            collapsed = [*collapsed[:MAX_LINES], f"Note over Sentry,UEM: ... {left} more lines"]
        out += [f"    {line}" for line in collapsed]
        return out


def _collapse(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(lines):
        j = i
        while j + 1 < len(lines) and lines[j + 1] == lines[i]:
            j += 1
        count = j - i + 1
        out.append(lines[i] if count == 1 else f"{lines[i]} (x{count})")
        i = j + 1
    return out


def mermaid_diagram(result: ScenarioResult) -> str:
    """One scenario as Mermaid ``sequenceDiagram`` text."""
    return "\n".join(_Diagram(result).render()) + "\n"


def mermaid_markdown(results: Sequence[ScenarioResult]) -> str:
    """Every scenario as a Markdown section with its diagram in a ``mermaid`` code block."""
    parts = ["# sentry-sim run", ""]
    for result in results:
        verdict = "passed" if result.passed else "FAILED"
        parts += [f"## {result.name} ({verdict})", "", f"`{result.source}`", ""]
        if result.description:
            parts += [result.description.strip(), ""]
        parts += ["```mermaid", mermaid_diagram(result).rstrip("\n"), "```", ""]
    return "\n".join(parts)
