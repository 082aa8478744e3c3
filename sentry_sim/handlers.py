"""The device-facing HTTP shell: ``/Microsoft-Server-ActiveSync``.

Responsibility: read the request line (``activesync.query``), hand the facts to the gate, carry
out its verdict (forward, deny with the version-correct answer, answer Provision, wait), and
emit the events of each step. It must not decide access (``gate.py``) nor shape EAS answers by
hand (``activesync.answers`` does); malformed input raises ``ActiveSyncError`` and the one
``error_middleware`` answers it.

Theory of operation: OPTIONS is forwarded before any identity is read, so it is never blocked
(Exchange never applies device access to OPTIONS, notes 1.9). Everything else is parsed (plain
or base64 query, the raw query string so base64 survives), admitted by the gate and dispatched.
The policy key is taken from ``X-MS-PolicyKey`` (or the base64 field), else from a
``PolicyKey`` query parameter, which some clients send on the acknowledgement.

In ``uem`` policy mode a forwarded request carries the upstream's key of its record instead of
the device's (``upstream_policy.upstream_line``), and the answers that may demand provisioning
(HTTP 449, small HTTP 200 bodies) are held back. On a demand the gatekeeper provisions with the
upstream (``Sentry.provision_upstream``) and replays the request with the new upstream key;
the device sees only the replay's answer. The replay needs the request body: bodies up to the
forwarder's buffer (1 MiB) are kept; a larger one was streamed and is gone, so the device is
told to retry (Status 111 from 14.0, HTTP 503 below, with Retry-After: 1), which it does with
the upstream key already in place. If provisioning with the upstream fails, the device gets
the upstream's own refusal (e.g. 401 for a wrong password) or else its demand, never a key.

The gatekeeper's own answers are never HTTP 200 with an empty body (only Sync may have one, and
the gatekeeper never answers a Sync itself with one): denials come from ``activesync.answers``
(200 only with a WBXML body) and Provision answers always have a body.
"""

from __future__ import annotations

from typing import Final

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

from activesync.answers import (
    WBXML_CONTENT_TYPE,
    EasAnswer,
    blocked_answer,
    device_limit_answer,
    provisioning_needed_answer,
    remote_wipe_needed_answer,
    status_answer,
)
from activesync.commands.provision import ProvisionDoc, ProvisionRequest, ProvisionResponse
from activesync.errors import ActiveSyncError, QueryError
from activesync.query import EasRequest, parse_policy_key, parse_request
from activesync.status import Status
from activesync.wbxml import decode, encode
from sentry_sim.config import BlockedResponse
from sentry_sim.events import (
    DeviceFirstSeen,
    ProvisionAnswered,
    RequestDenied,
    RequestForwarded,
    RequestReceived,
    RequestRejected,
    RequestWaiting,
    UpstreamFailed,
    next_request_id,
)
from sentry_sim.gate import (
    Access,
    AnswerProvision,
    Deny,
    DenyWhy,
    PolicyMode,
    Wait,
)
from sentry_sim.service import Sentry
from sentry_sim.upstream import Forwarded, Intercept, UpstreamUnavailable
from sentry_sim.upstream_policy import (
    HTTP_RETRY_WITH_PROVISION,
    MAX_DEMAND_BODY,
    demand_of,
    is_demand,
    upstream_line,
)

#: The running gatekeeper of a device-facing (or admin) app.
SENTRY: Final = web.AppKey("sentry", Sentry)

#: Largest Provision body the gatekeeper reads itself (real ones are well under 2 KiB).
MAX_PROVISION_BYTES: Final = 64 * 1024

#: Seconds a device told to retry after the gatekeeper provisioned with the upstream waits.
RETRY_AFTER_UPSTREAM_PROVISION_S: Final = 1

#: uem policy mode: the upstream answers held back because they may demand provisioning.
DEMAND_INTERCEPT: Final = Intercept(
    always=frozenset({HTTP_RETRY_WITH_PROVISION}),
    small=frozenset({200}),
    max_body=MAX_DEMAND_BODY,
    wanted=is_demand,
)

_EAS: Final = web.RequestKey("eas", EasRequest)
_RID: Final = web.RequestKey("request_id", str)


def _response(answer: EasAnswer) -> web.Response:
    return web.Response(
        status=answer.http_status,
        reason=answer.reason,
        body=answer.body,
        headers=dict(answer.headers),
    )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map ``ActiveSyncError`` to the answer it names (the one place that does)."""
    try:
        return await handler(request)
    except ActiveSyncError as exc:
        sentry = request.app[SENTRY]
        sentry.emit(
            RequestRejected(
                at=sentry.clock.now(),
                request_id=request.get(_RID, ""),
                http_status=exc.http_status,
                message=exc.message,
            )
        )
        eas: EasRequest | None = request.get(_EAS)
        if eas is not None and exc.eas_status is not None and eas.protocol_version is not None:
            return _response(status_answer(eas.command, exc.eas_status, eas.protocol_version))
        headers = {}
        if exc.http_status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="ActiveSync"'
        return web.Response(status=exc.http_status, headers=headers)


async def activesync(request: web.Request) -> web.StreamResponse:
    sentry = request.app[SENTRY]
    request_id = next_request_id()
    request[_RID] = request_id
    if request.method == "OPTIONS":
        # Never blocked, never identified: capability discovery goes straight upstream.
        return await _forward(sentry, request, request_id, "Options", "")
    eas = parse_request(
        request.method, request.path, request.rel_url.raw_query_string, request.headers
    )
    request[_EAS] = eas
    if eas.user is None:
        raise QueryError(
            "no user: expected User= in the query or Basic credentials (MS-ASHTTP 2.2.1.1.1.2)",
            http_status=401,
        )
    assert eas.protocol_version is not None  # parse_request guarantees it for POST
    policy_key = eas.policy_key
    if policy_key is None:
        policy_key = parse_policy_key(eas.param("PolicyKey"))
    access = Access.create(
        user=eas.user,
        device_id=eas.device_id,
        device_type=eas.device_type,
        command=eas.command,
        version=eas.protocol_version,
        policy_key=policy_key,
        user_agent=request.headers.get("User-Agent", ""),
        request_id=request_id,
    )
    now = sentry.clock.now()
    admission = sentry.gate.admit(access, now)
    sentry.emit(
        RequestReceived(
            at=now,
            request_id=request_id,
            record=access.key,
            command=access.command,
            protocol_version=access.version.text,
        )
    )
    if admission.first_seen:
        sentry.emit(
            DeviceFirstSeen(
                at=now, request_id=request_id, record=access.key, device_type=access.device_type
            )
        )
    if admission.report is not None:
        sentry.queue_report(admission.report)
    outcome = admission.outcome
    if isinstance(outcome, Wait):
        sentry.emit(
            RequestWaiting(at=now, request_id=request_id, record=access.key, until=outcome.until)
        )
        outcome = await sentry.wait_for_decision(access, outcome.until)
    if isinstance(outcome, Deny):
        return _deny(sentry, access, outcome)
    if isinstance(outcome, AnswerProvision):
        return await _provision(sentry, request, access, outcome)
    if sentry.config.activesync_policy_mode is PolicyMode.UEM:
        return await _forward_uem(sentry, request, eas, access)
    return await _forward(sentry, request, request_id, access.command, access.key)


def deny_answer(blocked_response: BlockedResponse, access: Access, deny: Deny) -> EasAnswer:
    """The answer to a request the gate denied, shaped for the device's version."""
    command, version = access.command, access.version
    blocking = deny.why in (DenyWhy.BLOCKED, DenyWhy.MAILBOX_LIMIT, DenyWhy.UNREACHABLE_BLOCK)
    if blocking and blocked_response is BlockedResponse.HTTP403:
        return EasAnswer(http_status=403, eas_status=deny.status)
    if deny.why is DenyWhy.MAILBOX_LIMIT:
        return device_limit_answer(command, version)
    if blocking:
        return blocked_answer(command, version)
    if deny.why is DenyWhy.WIPE_PENDING:
        return remote_wipe_needed_answer(
            command, version, policy_key_sent=access.policy_key is not None
        )
    return provisioning_needed_answer(command, version, deny.status)


def retry_answer(access: Access) -> EasAnswer:
    """ "Try again shortly": Status 111 ServerErrorRetryLater in the command's root from 14.0,
    HTTP 503 below (MS-ASCMD 2.2.2), with Retry-After (MS-ASHTTP 3.2.5.1, R287)."""
    answer = status_answer(access.command, Status.ServerErrorRetryLater, access.version)
    retry = ("Retry-After", str(RETRY_AFTER_UPSTREAM_PROVISION_S))
    return attrs.evolve(answer, headers=(*answer.headers, retry))


def _deny(sentry: Sentry, access: Access, deny: Deny) -> web.Response:
    command = access.command
    answer = deny_answer(sentry.config.blocked_response, access, deny)
    sentry.emit(
        RequestDenied(
            at=sentry.clock.now(),
            request_id=access.request_id,
            record=access.key,
            command=command,
            why=deny.why.value,
            http_status=answer.http_status,
            eas_status=answer.eas_status,
        )
    )
    return _response(answer)


async def _provision(
    sentry: Sentry, request: web.Request, access: Access, verdict: AnswerProvision
) -> web.Response:
    if request.content_length is not None and request.content_length > MAX_PROVISION_BYTES:
        raise QueryError(
            f"Provision body: expected at most {MAX_PROVISION_BYTES} bytes, "
            f"got {request.content_length}",
            http_status=413,
        )
    body = await request.content.read(MAX_PROVISION_BYTES + 1)
    if len(body) > MAX_PROVISION_BYTES:
        raise QueryError(
            f"Provision body: expected at most {MAX_PROVISION_BYTES} bytes", http_status=413
        )
    provision = ProvisionRequest.from_element(decode(body))
    if provision.device_information is not None:
        # Kept for provisioning with the upstream on this device's behalf (14.1+ needs it).
        sentry.device_information.remember(access.key, provision.device_information)
    answer = sentry.policy.answer(
        access.key,
        provision,
        version=access.version,
        policy_version=verdict.policy_version,
        wipe=verdict.wipe,
        presented_key=access.policy_key,
    )
    sentry.emit(
        ProvisionAnswered(
            at=sentry.clock.now(),
            request_id=access.request_id,
            record=access.key,
            phase=answer.phase,
            policy_version=verdict.policy_version,
        )
    )
    return web.Response(
        status=200,
        body=PROVISION_BODIES.encode(answer.response),
        headers={"Content-Type": WBXML_CONTENT_TYPE},
    )


class ProvisionBodies:
    """WBXML of Provision answers, each shape encoded once and reused with another key.

    Every device's phase-1 answer is the same policy document under a different temporary
    key, and building and encoding the document's element tree is most of the gatekeeper's
    own work in a first-access storm. WBXML carries text inline and NUL-terminated (STR_I,
    no length prefix, no string table: ``activesync.wbxml.encoder``), so the encoding of an
    answer is the encoding of the same answer under a marker key with the marker's bytes
    replaced by the key's. The first use of each shape checks exactly that against a direct
    encoding; a shape that does not split cleanly is always encoded directly.
    """

    #: A key no answer carries (keys are decimal uint32s): marks the key's place.
    MARKER: Final = "sentry-sim-policy-key"
    #: Shapes kept (the policy versions and protocol versions in use make a handful).
    MAX_SHAPES: Final = 256

    def __init__(self) -> None:
        self._shapes: dict[tuple[object, ...], tuple[ProvisionDoc | None, bytes, bytes] | None] = {}

    def encode(self, response: ProvisionResponse) -> bytes:
        key = response.policy_key
        if key is None:
            return encode(response.to_element())
        doc = response.doc
        # The doc by identity (the policy gate keeps one per policy version; the entry keeps
        # it alive, so its id cannot be reused while cached); everything else by value.
        shape = (
            id(doc),
            response.status,
            response.policy_type,
            response.policy_status,
            response.wap_doc,
            response.remote_wipe,
            response.account_only_remote_wipe,
            response.device_information_status,
        )
        if shape not in self._shapes:
            return self._learn(shape, response)
        parts = self._shapes[shape]
        if parts is None or parts[0] is not doc:
            return encode(response.to_element())
        return parts[1] + key.encode("ascii") + parts[2]

    def _learn(self, shape: tuple[object, ...], response: ProvisionResponse) -> bytes:
        direct = encode(response.to_element())
        if len(self._shapes) >= self.MAX_SHAPES:
            self._shapes.clear()
        marked = encode(attrs.evolve(response, policy_key=self.MARKER).to_element())
        marker = self.MARKER.encode("ascii")
        parts: tuple[ProvisionDoc | None, bytes, bytes] | None = None
        if marked.count(marker) == 1:
            head, _, tail = marked.partition(marker)
            if head + str(response.policy_key).encode("ascii") + tail == direct:
                parts = (response.doc, head, tail)
        self._shapes[shape] = parts
        return direct


#: The gatekeeper's Provision answer encoder (a cache of pure values: one per process).
PROVISION_BODIES: Final = ProvisionBodies()


async def _forward(
    sentry: Sentry,
    request: web.Request,
    request_id: str,
    command: str,
    record: str,
) -> web.StreamResponse:
    """Pass the request through unchanged (OPTIONS, pass_through policy mode)."""
    try:
        forwarded = await sentry.forwarder.forward(request)
    except UpstreamUnavailable as exc:
        return _upstream_down(sentry, request_id, command, record, str(exc))
    assert isinstance(forwarded, Forwarded)  # no intercept asked for
    return _forwarded(sentry, request_id, command, record, forwarded.status, forwarded.response)


async def _forward_uem(
    sentry: Sentry, request: web.Request, eas: EasRequest, access: Access
) -> web.StreamResponse:
    """uem policy mode: forward with the upstream's key; provision upstream on its demand."""
    rid, command, record = access.request_id, access.command, access.key
    used = sentry.upstream_keys.get(record)
    line = upstream_line(eas, request.raw_path, used)
    try:
        result = await sentry.forwarder.forward(
            request,
            set_headers=dict(line.set_headers),
            drop_headers=line.drop_headers,
            raw_path=line.raw_path,
            intercept=DEMAND_INTERCEPT,
        )
    except UpstreamUnavailable as exc:
        return _upstream_down(sentry, rid, command, record, str(exc))
    if isinstance(result, Forwarded):
        return _forwarded(sentry, rid, command, record, result.status, result.response)
    held = result.answer
    demand = demand_of(held.status, held.body) or held.status
    outcome = await sentry.provision_upstream(
        access, eas, request.headers, request.raw_path, used, demand
    )
    if outcome.unreachable:
        return _upstream_down(sentry, rid, command, record, outcome.detail)
    if outcome.key is None:
        # What the upstream said, its refusal of the Provision (401...) or else its demand:
        # neither carries a key. The device provisions with the gatekeeper again and retries.
        said = outcome.answer or held
        return _forwarded(sentry, rid, command, record, said.status, said.to_response())
    if result.request_body is None:
        # The body was streamed and cannot be sent again; the upstream key is in place now.
        answer = retry_answer(access)
        sentry.emit(
            RequestDenied(
                at=sentry.clock.now(),
                request_id=rid,
                record=record,
                command=command,
                why="upstream_retry",
                http_status=answer.http_status,
                eas_status=answer.eas_status,
            )
        )
        return _response(answer)
    line = upstream_line(eas, request.raw_path, outcome.key, force=True)
    try:
        replay = await sentry.forwarder.forward(
            request,
            body=result.request_body,
            set_headers=dict(line.set_headers),
            drop_headers=line.drop_headers,
            raw_path=line.raw_path,
        )
    except UpstreamUnavailable as exc:
        return _upstream_down(sentry, rid, command, record, str(exc))
    assert isinstance(replay, Forwarded)  # no intercept asked for: a second demand goes through
    return _forwarded(sentry, rid, command, record, replay.status, replay.response)


def _forwarded(
    sentry: Sentry,
    request_id: str,
    command: str,
    record: str,
    upstream_status: int,
    response: web.StreamResponse,
) -> web.StreamResponse:
    sentry.emit(
        RequestForwarded(
            at=sentry.clock.now(),
            request_id=request_id,
            record=record,
            command=command,
            upstream_status=upstream_status,
        )
    )
    return response


def _upstream_down(
    sentry: Sentry, request_id: str, command: str, record: str, error: str
) -> web.Response:
    sentry.emit(
        UpstreamFailed(
            at=sentry.clock.now(),
            request_id=request_id,
            record=record,
            command=command,
            error=error,
        )
    )
    # MS-ASHTTP 3.2.5.1 (R287): 503 MAY carry Retry-After; clients honour it.
    return web.Response(
        status=503,
        headers={"Retry-After": str(sentry.config.upstream_retry_after_s)},
        text="upstream EAS server unavailable",
    )
