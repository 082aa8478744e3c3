"""``sentry-sim explain``: why one device is allowed or blocked, from a running lab.

Responsibility: ask the gatekeeper's admin API (``GET /api/devices/{user}/{device_id}``) and the
UEM's (``GET /api/v1/eas/devices/{user}/{device_id}/explain``) about one (user, device) and
show both side by side: the gatekeeper's cached state, reasons, when it was decided and by which
UEM answer, how long the cache holds (the next resync, or until the UEM pushes a change); the
UEM's decision, group and the rule trace with the inputs every rule read. It must not change
anything. A listener that does not answer is named with its URL (exit 1); bad arguments or a bad
ready file exit 2.

Theory of operation: the URLs and the admin token come from the lab's ready file or from flags;
both GETs run concurrently on one ``aiohttp`` session bounded by a timeout; ``fetch_explain``
returns an ``Explained`` value and ``format_explained`` renders it, so tests can call the async
core directly and the CLI wraps it in ``asyncio.run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import attrs

from scenarios.cli_decide import format_trace, reasons_text

#: Seconds allowed for both requests together.
TIMEOUT_S: Final = 10.0
#: The gatekeeper's states as the UEM names them.
_SAME: Final = {"allowed": "ALLOW", "blocked": "BLOCK", "wiped": "WIPE"}


class Unreachable(Exception):
    """A listener did not answer; the message names its URL."""


class UsageError(ValueError):
    """Bad arguments or ready file; the message says which."""


@attrs.frozen(kw_only=True)
class Endpoints:
    """Where to ask, and the admin token."""

    sentry_admin: str
    uem_admin: str
    token: str

    @classmethod
    def from_ready_file(cls, path: str) -> Endpoints:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the ready file: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UsageError(f"{path}: not a JSON ready file ({exc})") from None
        if not isinstance(data, Mapping):
            raise UsageError(f"{path}: expected a JSON object, got {type(data).__name__}")
        values: dict[str, str] = {}
        for key in ("sentry_admin_url", "uem_admin_url", "admin_token"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise UsageError(f"{path}: {key}: missing (is this a lab's ready file?)")
            values[key] = value
        return cls(
            sentry_admin=_url(values["sentry_admin_url"], f"{path}: sentry_admin_url"),
            uem_admin=_url(values["uem_admin_url"], f"{path}: uem_admin_url"),
            token=values["admin_token"],
        )


def _url(value: str, where: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise UsageError(f"{where}: expected an http:// URL, got {value[:60]!r}")
    return value.rstrip("/")


@attrs.frozen(kw_only=True)
class Answer:
    """One admin API's answer: the JSON body when found, else the error it gave."""

    url: str
    status: int
    body: Mapping[str, Any]

    @property
    def found(self) -> bool:
        return self.status == 200


@attrs.frozen(kw_only=True)
class Explained:
    user: str
    device_id: str
    gatekeeper: Answer
    uem: Answer


async def _get(session: aiohttp.ClientSession, url: str, token: str) -> Answer:
    try:
        async with session.get(url, headers={"Authorization": f"Bearer {token}"}) as response:
            try:
                body = await response.json(content_type=None)
            except ValueError:
                body = {"error": (await response.text())[:200]}
            if not isinstance(body, Mapping):
                body = {"error": f"unexpected answer: {str(body)[:200]}"}
            return Answer(url=url, status=response.status, body=body)
    except aiohttp.ClientConnectionError as exc:
        raise Unreachable(f"cannot reach {url}: {exc.__class__.__name__}: {exc}") from None


async def fetch_explain(endpoints: Endpoints, user: str, device_id: str) -> Explained:
    """Ask both admin APIs about (user, device_id); ``Unreachable`` names a silent URL."""
    u, d = quote(user, safe="@"), quote(device_id, safe="")
    gatekeeper_url = f"{endpoints.sentry_admin}/api/devices/{u}/{d}"
    uem_url = f"{endpoints.uem_admin}/api/v1/eas/devices/{u}/{d}/explain"
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            gatekeeper, uem = await asyncio.gather(
                _get(session, gatekeeper_url, endpoints.token),
                _get(session, uem_url, endpoints.token),
            )
    except TimeoutError:
        raise Unreachable(
            f"no answer within {TIMEOUT_S:g}s from {gatekeeper_url} or {uem_url}"
        ) from None
    return Explained(user=user, device_id=device_id, gatekeeper=gatekeeper, uem=uem)


def _when(at: object) -> str:
    if isinstance(at, int | float) and not isinstance(at, bool):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    return "unknown"


def _mask(body: Mapping[str, Any]) -> str:
    raw = body.get("reasons", 0)
    return reasons_text(raw if isinstance(raw, int) else 0)


def _gatekeeper_lines(answer: Answer) -> list[str]:
    lines = [f"gatekeeper  ({answer.url})"]
    body = answer.body
    if not answer.found:
        lines.append(f"  no record ({answer.status}): {body.get('error', '')}")
        if body.get("hint"):
            lines.append(f"  hint: {body['hint']}")
        return lines
    state = str(body.get("state", "?")).upper()
    until = body.get("cached_until_next_resync")
    if state == "UNKNOWN":
        cached = "not decided yet: waiting for the UEM's answer"
    elif body.get("fallback"):
        cached = "until the UEM answers the retried report (fallback decision)"
    elif until is None:
        cached = "until the UEM pushes a change (no resync has run yet)"
    else:
        cached = f"the next resync at {_when(until)}, or until the UEM pushes a change"
    lines += [
        f"  state:        {state}",
        f"  reasons:      {_mask(body)}",
        f"  decided:      {_when(body.get('cached_since', body.get('decided_at')))}"
        f" by {body.get('decided_by', '?')}",
        f"  cached until: {cached}",
        f"  policy:       {body.get('policy', '?')}",
        f"  requests:     {body.get('requests', 0)} (last {_when(body.get('last_seen'))})",
        f"  why:          {body.get('explanation', '')}",
    ]
    if body.get("report_in_flight"):
        lines.append(f"  report:       in flight, attempt {body.get('report_attempts', 0)}")
    return lines


def _uem_lines(answer: Answer) -> list[str]:
    lines = [f"UEM  ({answer.url})"]
    body = answer.body
    if not answer.found:
        lines.append(f"  no record ({answer.status}): {body.get('error', '')}")
        if body.get("hint"):
            lines.append(f"  hint: {body['hint']}")
        return lines
    explanation = str(body.get("explanation", ""))
    override = body.get("override")
    lines += [
        f"  state:        {body.get('state', '?')}",
        f"  reasons:      {_mask(body)}",
        f"  group:        {body.get('group', '?')}",
        f"  registered:   {'yes' if body.get('registered') else 'no'}",
        f"  decided:      {_when(body.get('decided_at'))} (change version {body.get('version')})",
    ]
    if isinstance(override, Mapping):
        lines.append(
            f"  override:     {override.get('action')} (note: {override.get('note') or '-'})"
        )
    lines.append(f"  why:          {explanation.splitlines()[0] if explanation else ''}")
    trace = body.get("trace")
    if isinstance(trace, list) and trace:
        lines.append("  rule trace (rule, outcome, the inputs it read):")
        lines += format_trace((r for r in trace if isinstance(r, Mapping)), indent="    ")
    return lines


def agreement(explained: Explained) -> str:
    """One line: do the gatekeeper's cache and the UEM's decision say the same?"""
    gk, uem = explained.gatekeeper, explained.uem
    if not gk.found or not uem.found:
        return "only one side has a record: the device may not have connected yet"
    gk_state = str(gk.body.get("state", "")).lower()
    uem_state = str(uem.body.get("state", ""))
    if _SAME.get(gk_state) == uem_state and gk.body.get("reasons") == uem.body.get("reasons"):
        return f"in agreement: the gatekeeper enforces the UEM's {uem_state}"
    return (
        f"NOT in agreement: the gatekeeper caches {gk_state.upper()} {_mask(gk.body)}, the UEM "
        f"decided {uem_state} {_mask(uem.body)} (a push or the next resync will align them)"
    )


def format_explained(explained: Explained) -> str:
    lines = [
        f"{explained.user} / {explained.device_id}",
        "",
        *_gatekeeper_lines(explained.gatekeeper),
        "",
        *_uem_lines(explained.uem),
        "",
        agreement(explained),
    ]
    return "\n".join(lines)


def endpoints_from_args(args: argparse.Namespace) -> Endpoints:
    if args.ready_file:
        if args.sentry_admin or args.uem_admin or args.token:
            raise UsageError("give --ready-file or --sentry-admin/--uem-admin/--token, not both")
        return Endpoints.from_ready_file(args.ready_file)
    missing = [
        flag
        for flag, value in (
            ("--sentry-admin", args.sentry_admin),
            ("--uem-admin", args.uem_admin),
            ("--token", args.token),
        )
        if not value
    ]
    if missing:
        raise UsageError(f"missing {', '.join(missing)} (or give --ready-file)")
    return Endpoints(
        sentry_admin=_url(args.sentry_admin, "--sentry-admin"),
        uem_admin=_url(args.uem_admin, "--uem-admin"),
        token=args.token,
    )


def handle(args: argparse.Namespace) -> int:
    try:
        endpoints = endpoints_from_args(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        explained = asyncio.run(fetch_explain(endpoints, args.user, args.device))
    except Unreachable as exc:
        print(f"error: {exc} (is the lab running?)", file=sys.stderr)
        return 1
    if args.json:
        out = {
            "user": explained.user,
            "device_id": explained.device_id,
            "gatekeeper": {
                "url": explained.gatekeeper.url,
                "status": explained.gatekeeper.status,
                **explained.gatekeeper.body,
            },
            "uem": {"url": explained.uem.url, "status": explained.uem.status, **explained.uem.body},
            "agreement": agreement(explained),
        }
        print(json.dumps(out, indent=2))
    else:
        print(format_explained(explained))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "explain",
        help="explain one device's access decision in a running lab",
        description="Ask a running lab's gatekeeper and UEM about one (user, device): the "
        "gatekeeper's cached state, reasons, when and by which UEM answer it was decided and "
        "how long the cache holds; the UEM's decision with the rule trace and the inputs each "
        "rule read. Exit 1 when a listener does not answer.",
    )
    parser.add_argument("--user", required=True, help="the user as the device sends it")
    parser.add_argument("--device", required=True, metavar="DEVICE_ID", help="EAS DeviceId")
    parser.add_argument("--ready-file", metavar="FILE", help="the lab's ready file (JSON)")
    parser.add_argument("--sentry-admin", metavar="URL", help="the gatekeeper's admin URL")
    parser.add_argument("--uem-admin", metavar="URL", help="the UEM's admin URL")
    parser.add_argument("--token", metavar="TOKEN", help="the admin token")
    parser.add_argument("--json", action="store_true", help="print both answers as JSON")
    parser.set_defaults(func=handle)
