"""The mock Exchange as an aiohttp application: the EAS endpoint and a small admin API.

Responsibility: the imperative shell around ``exchange_sim.commands`` and ``mailbox``: read
and bound the request body, authenticate (Basic, 401 with a challenge), parse the request line
(``activesync.query``), enforce the policy key (``activesync.provisioning``), decode WBXML,
call the pure handler, encode the answer, hold Pings on the injected clock, and wake them when
mail arrives. It must not decide protocol outcomes itself: statuses come from the cores, error
answers from ``activesync.answers``.

Theory of operation:
- ``make_app(config, clock=..., admin_token=...)`` builds a fresh application; all state lives
  in ``AppKey``s (the mail store, the provisioning book, the change notifier).
- One ``error_middleware`` turns every ``ActiveSyncError`` into its answer. When the request
  got far enough to know its command and a version this server speaks, the answer is
  ``status_answer`` (HTTP 200 + ``<Root><Status>N</Status></Root>`` from 14.0, the paired HTTP
  code below, as Exchange does); otherwise, and for every 4xx/5xx that carries no body, the
  response is the HTTP status with a one-line ``text/plain`` reason, so people and non-EAS
  tools see what was wrong. The reason is also in the ``X-SentrySim-Error`` header.
- ``handle_device`` authenticates, parses the request line and checks the policy key, then
  hands one ``_Command`` (state, mailbox, device context, request line, body) to the command's
  handler in ``_HANDLERS``; the commands that need only their mailbox share one shell,
  ``_plain_command`` (decode, read the view, call the pure handler, encode).
- A held Ping awaits two futures: the clock's sleep for the heartbeat and a per-mailbox change
  signal. Thousands of held Pings are thousands of parked futures; nothing polls.
- Admin API (``Authorization: Bearer <token>``, checked by ``labauth.admin_guard``):
  ``POST /admin/mail`` delivers a message (and wakes Pings), ``GET /admin/mailboxes`` and
  ``GET /admin/mailboxes/{user}`` summarize,
  ``POST /admin/mailboxes/{user}/devices/{device}/wipe`` requests a remote wipe (MS-ASPROV 3.2.5.1),
  ``PUT/GET/DELETE /admin/faults`` sets, shows and clears injected faults (docs/faults.md).
- Faults (``exchange_sim.faults``): the first middleware applies the generic faults (latency,
  errors, hang, dropped connections) to every route but ``/admin/faults``; the EAS-aware ones
  act in ``handle_device`` around the command handler, after authentication and the policy key.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, TypeVar

import attrs
from aiohttp import web

from activesync.answers import WBXML_CONTENT_TYPE, EasAnswer, status_answer
from activesync.commands.folder_sync import FolderSyncRequest
from activesync.commands.get_item_estimate import GetItemEstimateRequest
from activesync.commands.item_operations import ItemOperationsRequest
from activesync.commands.ping import PingRequest, PingResponse
from activesync.commands.provision import ProvisionRequest
from activesync.commands.roots import commands_header
from activesync.commands.send_mail import SendMailRequest
from activesync.commands.settings import SettingsRequest
from activesync.commands.sync import SyncCollectionRequest, SyncRequest
from activesync.errors import ActiveSyncError, CommandError
from activesync.query import ENDPOINT, EasRequest, parse_request
from activesync.status import Status
from activesync.versions import ProtocolVersion
from activesync.wbxml import Element, decode, encode
from exchange_sim import commands as cmd
from exchange_sim import mailbox as mb
from exchange_sim.auth import AuthDenied, authenticate, challenge, login_part
from exchange_sim.config import ExchangeConfig, UserConfig
from exchange_sim.faults import FAULTS, FAULTS_PATH, ExchangeFaults, command_of, is_fault_admin
from exchange_sim.policy import ProvisioningBook
from labauth import Lockout, admin_guard
from labfaults import FAULT_HEADER, FaultError, fault_middleware
from simclock import Clock, SystemClock

#: Commands this mock serves; any other known command gets 137 CommandNotSupported.
SERVED_COMMANDS: Final = frozenset(
    {
        "Provision",
        "FolderSync",
        "Sync",
        "Ping",
        "Settings",
        "SendMail",
        "GetItemEstimate",
        "ItemOperations",
    }
)
#: MS-ASHTTP 2.2.1.1.3: only these may have an empty body (GetAttachment is not served).
EMPTY_BODY_ALLOWED: Final = frozenset({"Sync", "Ping"})
#: Largest admin API request body.
MAX_ADMIN_BODY: Final = 1024 * 1024


class ChangeNotifier:
    """Wakes whoever waits on a mailbox when it changes (a broadcast per mailbox login)."""

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def waiter(self, user: str) -> asyncio.Future[None]:
        """A future resolved at the next ``notify(user)``; ``discard`` it when done."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(user, set()).add(future)
        return future

    def discard(self, user: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(user)
        if waiters is not None:
            waiters.discard(future)
            if not waiters:
                del self._waiters[user]

    def notify(self, user: str) -> None:
        for future in self._waiters.pop(user, set()):
            if not future.done():
                future.set_result(None)

    @property
    def waiting(self) -> int:
        """How many waiters are parked (held Pings)."""
        return sum(len(w) for w in self._waiters.values())


@attrs.define(eq=False)
class ServerState:
    """Everything the running mock holds besides the mailboxes."""

    config: ExchangeConfig
    store: mb.MailStore
    clock: Clock
    notifier: ChangeNotifier
    admin_token: str
    provisioning: ProvisioningBook
    #: (login, device) -> the collections of the last full Sync, for empty/Partial Syncs.
    sync_requests: dict[tuple[str, str], tuple[SyncCollectionRequest, ...]] = attrs.Factory(dict)


STATE: Final = web.AppKey("exchange_state", ServerState)
#: Set on a request once its command and version are known and served: errors then answer in
#: the EAS form for that command and version.
EAS_CONTEXT: Final = web.RequestKey("exchange_eas_context", EasRequest)


# --- errors ------------------------------------------------------------------------------------


def _text_response(status: int, message: str, **headers: str) -> web.Response:
    response = web.Response(status=status, text=message + "\n", content_type="text/plain")
    response.headers["X-SentrySim-Error"] = message[:300].replace("\r", " ").replace("\n", " ")
    response.headers.update(headers)
    return response


def answer_response(answer: EasAnswer, reason: str | None = None) -> web.Response:
    """An ``EasAnswer`` as an aiohttp response; an error with no body gets a text reason."""
    if answer.body:
        response = web.Response(status=answer.http_status, body=answer.body, reason=answer.reason)
        for name, value in answer.headers:
            response.headers[name] = value
    elif answer.http_status >= 400 and reason is not None and answer.http_status not in (403, 449):
        response = _text_response(answer.http_status, reason)
    else:
        # 403/449 bodies stay empty, exactly as Exchange sends them (notes 3.3).
        response = web.Response(status=answer.http_status, reason=answer.reason)
    if reason is not None:
        response.headers["X-SentrySim-Error"] = reason[:300].replace("\n", " ")
    return response


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ActiveSyncError as exc:
        eas = request.get(EAS_CONTEXT)
        if eas is not None and exc.eas_status is not None and eas.protocol_version is not None:
            return answer_response(
                status_answer(eas.command, exc.eas_status, eas.protocol_version), exc.message
            )
        if request.path.startswith("/admin/"):
            # The admin API speaks JSON, errors included.
            return _json({"error": exc.message}, exc.http_status)
        return _text_response(exc.http_status, exc.message)


# --- device endpoint ---------------------------------------------------------------------------


def _common_headers(response: web.StreamResponse, config: ExchangeConfig) -> None:
    response.headers["MS-Server-ActiveSync"] = config.server_build
    response.headers["Cache-Control"] = "private"


def _unauthorized(config: ExchangeConfig, denied: AuthDenied) -> web.Response:
    # MS-ASHTTP 2.2.2.1.1: 401 asks the client for credentials; RFC 7235 needs the challenge.
    return _text_response(
        401,
        f"authentication required: {denied.reason}",
        **{"WWW-Authenticate": challenge(config.realm)},
    )


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ActiveSyncError(
            f"request body of {request.content_length} bytes exceeds the limit of {limit}",
            http_status=413,
        )
    body = await request.content.read(limit + 1)
    if len(body) > limit:
        raise ActiveSyncError(f"request body exceeds the limit of {limit} bytes", http_status=413)
    return body


async def handle_options(request: web.Request) -> web.StreamResponse:
    """MS-ASHTTP 2.2.4 / 3.2.5.2: the versions and commands this server offers."""
    state = request.app[STATE]
    user = authenticate(request.headers.get("Authorization"), state.config)
    if isinstance(user, AuthDenied):
        # MS-ASHTTP 2.2.3.1.2: OPTIONS carries the Authorization header too.
        return _unauthorized(state.config, user)
    response = web.Response(status=200)
    _common_headers(response, state.config)
    response.headers["Allow"] = "OPTIONS,POST"
    response.headers["Public"] = "OPTIONS,POST"
    response.headers["MS-ASProtocolVersions"] = ",".join(
        v.text for v in state.config.protocol_versions
    )
    response.headers["MS-ASProtocolCommands"] = commands_header(state.config.highest_version)
    return response


async def handle_device(request: web.Request) -> web.StreamResponse:
    """POST /Microsoft-Server-ActiveSync: one EAS command."""
    state = request.app[STATE]
    config = state.config
    user = authenticate(request.headers.get("Authorization"), config)
    if isinstance(user, AuthDenied):
        return _unauthorized(config, user)
    eas = parse_request(
        request.method, request.path, request.rel_url.raw_query_string, request.headers
    )
    version = eas.protocol_version
    if version is None or version not in config.protocol_versions:
        raise ActiveSyncError(
            f"MS-ASProtocolVersion {version}: this server speaks "
            f"{', '.join(v.text for v in config.protocol_versions)}",
            http_status=400,
        )
    _check_user(eas, user)
    mailbox = state.store.mailbox(user.name)
    if mailbox is None:
        raise ActiveSyncError(f"user {user.name} has no mailbox", http_status=403)
    request[EAS_CONTEXT] = eas
    if eas.command not in SERVED_COMMANDS:
        raise ActiveSyncError(
            f"Cmd={eas.command}: this mock serves {', '.join(sorted(SERVED_COMMANDS))}",
            http_status=501,
            eas_status=Status.CommandNotSupported,
        )
    ctx = cmd.DeviceContext(
        user=mailbox.user, device_id=eas.device_id, device_type=eas.device_type, version=version
    )
    now = state.clock.now()
    mailbox.device(eas.device_id).last_seen = now
    body = await _read_body(request, config.max_request_bytes)
    if eas.command != "Provision" and eas.command != "Ping" and config.provisioning_required:
        # MS-ASPROV 3.1.5.1: every command but Ping (and OPTIONS) carries the policy key.
        denial = state.provisioning.check(mailbox.user, eas)
        if denial is not None:
            return _finish(answer_response(denial), config)
    faults = request.app[FAULTS]
    injected = faults.before_command(eas.command, version)
    if injected is not None:
        # An EAS-aware fault answers instead of the command (exchange_sim.faults).
        answer = answer_response(injected)
        answer.headers[FAULT_HEADER] = f"{eas.command} answered {injected.http_status}" + (
            f" with Status {injected.eas_status}" if injected.status_in_body else ""
        )
        return _finish(answer, config)
    handler = _HANDLERS[eas.command]
    response = await handler(_Command(state=state, mailbox=mailbox, ctx=ctx, eas=eas, body=body))
    if isinstance(response, web.Response) and isinstance(response.body, bytes):
        corrupted = faults.corrupt_response(eas.command, response.body)
        if corrupted is not None:
            response.body = corrupted
            response.headers[FAULT_HEADER] = f"{eas.command}: corrupted WBXML token"
    return _finish(response, config)


def _finish(response: web.StreamResponse, config: ExchangeConfig) -> web.StreamResponse:
    _common_headers(response, config)
    return response


def _check_user(eas: EasRequest, user: UserConfig) -> None:
    if eas.user is None:
        return
    named = login_part(eas.user).lower()
    if named not in (user.name.lower(), user.email.lower()):
        raise ActiveSyncError(
            f"User={eas.user}: the credentials are for {user.name}; a device syncs the "
            "mailbox of the user it authenticates as",
            http_status=403,
        )


@attrs.frozen(kw_only=True)
class _Command:
    """One authenticated, policy-checked EAS command on its way to its handler."""

    #: The running server.
    state: ServerState
    #: The authenticated user's mailbox.
    mailbox: mb.Mailbox
    #: Who sent it, speaking which version.
    ctx: cmd.DeviceContext
    #: The parsed request line.
    eas: EasRequest
    #: The raw body, already bounded.
    body: bytes

    def element(self) -> Element | None:
        """The decoded WBXML body, or None for an empty body where the command allows it."""
        if not self.body:
            if self.eas.command in EMPTY_BODY_ALLOWED:
                return None
            raise CommandError(f"Cmd={self.eas.command}: the request needs a WBXML body; got none")
        return decode(self.body, max_size=self.state.config.max_request_bytes)

    def required_element(self) -> Element:
        """The decoded body of a command that always has one (not in ``EMPTY_BODY_ALLOWED``)."""
        element = self.element()
        assert element is not None, f"{self.eas.command} may not have an empty body"
        return element


def _wbxml(element: Element) -> web.Response:
    response = web.Response(status=200, body=encode(element))
    response.headers["Content-Type"] = WBXML_CONTENT_TYPE
    return response


Handler = Callable[[_Command], Awaitable[web.StreamResponse]]


class _ResponseView(Protocol):
    """What a pure command handler returns: a typed view that writes its WBXML tree."""

    def to_element(self) -> Element: ...


_Req = TypeVar("_Req")


def _plain_command(
    read: Callable[[Element], _Req],
    handle: Callable[[mb.Mailbox, cmd.DeviceContext, _Req], _ResponseView],
) -> Handler:
    """The shell of a command that needs nothing but its mailbox: decode the body, read the
    request view, call the pure handler, encode its response (FolderSync, Settings,
    GetItemEstimate, ItemOperations)."""

    async def handler(command: _Command) -> web.StreamResponse:
        element = command.required_element()
        return _wbxml(handle(command.mailbox, command.ctx, read(element)).to_element())

    return handler


async def _sync(command: _Command) -> web.StreamResponse:
    state, mailbox, ctx = command.state, command.mailbox, command.ctx
    element = command.element()
    key = (mailbox.user, ctx.device_id)
    before = mailbox.change_seq
    outcome = cmd.handle_sync(
        mailbox,
        ctx,
        SyncRequest.from_element(element),
        remembered=state.sync_requests.get(key),
        config=state.config,
        now=state.clock.now(),
    )
    if outcome.remembered is not None:
        state.sync_requests[key] = outcome.remembered
    if mailbox.change_seq != before:
        # A client change here is news for the user's other devices' Pings.
        state.notifier.notify(mailbox.user)
    return _wbxml(outcome.response.to_element())


async def _ping(command: _Command) -> web.StreamResponse:
    state, mailbox, ctx = command.state, command.mailbox, command.ctx
    element = command.element()
    plan = cmd.plan_ping(mailbox, ctx, PingRequest.from_element(element), state.config)
    if isinstance(plan, PingResponse):
        return _wbxml(plan.to_element())
    return _wbxml((await _hold_ping(state, mailbox, ctx, plan)).to_element())


async def _hold_ping(
    state: ServerState, mailbox: mb.Mailbox, ctx: cmd.DeviceContext, watch: cmd.PingWatch
) -> PingResponse:
    """Wait for a change in a watched folder (Status 2) or the heartbeat (Status 1)."""
    sleeper = asyncio.ensure_future(state.clock.sleep(watch.heartbeat))
    try:
        while True:
            # Registered before any await: a change between the check and the wait is not lost.
            woken = state.notifier.waiter(mailbox.user)
            try:
                await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                state.notifier.discard(mailbox.user, woken)
                if not woken.done():
                    woken.cancel()
            if woken.done() and not woken.cancelled():
                changed = cmd.ping_changes(mailbox, ctx, watch)
                if changed is not None:
                    return changed
            if sleeper.done():
                return PingResponse.expired()
    finally:
        if not sleeper.done():
            sleeper.cancel()


async def _send_mail(command: _Command) -> web.StreamResponse:
    state, mailbox, ctx, eas = command.state, command.mailbox, command.ctx, command.eas
    version = ctx.version
    client_id: str | None = None
    if version >= ProtocolVersion.V14_0:
        element = command.required_element()
        parsed = SendMailRequest.from_element(element)
        mime, save_in_sent, client_id = parsed.mime, parsed.save_in_sent_items, parsed.client_id
    else:
        # MS-ASCMD 2.2.1.17: below 14.0 the body is the message itself (message/rfc822).
        if not command.body:
            raise CommandError("SendMail: the request needs the MIME message as its body")
        mime, save_in_sent = command.body, eas.save_in_sent
    outcome = cmd.handle_send_mail(
        state.store,
        mailbox,
        ctx,
        mime=mime,
        save_in_sent=save_in_sent,
        client_id=client_id,
        now=state.clock.now(),
    )
    if outcome.status is not None:
        return answer_response(
            status_answer("SendMail", outcome.status, version),
            f"SendMail refused: {Status(outcome.status).name}",
        )
    if outcome.delivery is not None:
        for user in outcome.delivery.delivered_to:
            state.notifier.notify(user)
    state.notifier.notify(mailbox.user)
    # MS-ASCMD 2.2.1.17: success is an empty 200.
    return web.Response(status=200)


async def _provision(command: _Command) -> web.StreamResponse:
    state, mailbox, ctx = command.state, command.mailbox, command.ctx
    parsed = ProvisionRequest.from_element(command.required_element())
    if parsed.device_information is not None:
        cmd.remember_device_information(mailbox, ctx, parsed.device_information)
    response = state.provisioning.provision(mailbox.user, ctx.device_id, parsed, ctx.version)
    return _wbxml(response.to_element())


_HANDLERS: Final[dict[str, Handler]] = {
    "ItemOperations": _plain_command(
        ItemOperationsRequest.from_element, cmd.handle_item_operations
    ),
    "Provision": _provision,
    "FolderSync": _plain_command(FolderSyncRequest.from_element, cmd.handle_folder_sync),
    "Sync": _sync,
    "Ping": _ping,
    "Settings": _plain_command(SettingsRequest.from_element, cmd.handle_settings),
    "SendMail": _send_mail,
    "GetItemEstimate": _plain_command(
        GetItemEstimateRequest.from_element, cmd.handle_get_item_estimate
    ),
}


# --- admin API ---------------------------------------------------------------------------------


def _is_admin_route(request: web.Request) -> bool:
    return request.path == "/admin" or request.path.startswith("/admin/")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.json_response(payload, status=status, dumps=lambda o: json.dumps(o, indent=2))


async def admin_inject_mail(request: web.Request) -> web.StreamResponse:
    """POST /admin/mail {"to": [...], "subject": ..., "body": ..., "from": ...}."""
    state = request.app[STATE]
    raw = await _read_body(request, MAX_ADMIN_BODY)
    try:
        payload = json.loads(raw or b"null")
    except ValueError as exc:
        raise ActiveSyncError(f"admin /admin/mail: body is not JSON: {exc}") from None
    message = _admin_message(state, payload, now=state.clock.now())
    delivery = state.store.deliver(message, now=state.clock.now())
    for user in delivery.delivered_to:
        state.notifier.notify(user)
    status = 200 if delivery.delivered_to else 404
    return _json(
        {"delivered_to": list(delivery.delivered_to), "unknown": list(delivery.unknown)}, status
    )


def _admin_message(state: ServerState, payload: object, *, now: float) -> mb.Message:
    where = "admin /admin/mail"
    if not isinstance(payload, dict):
        raise ActiveSyncError(f"{where}: expected a JSON object with to, subject, body")
    to = payload.get("to")
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to or not all(isinstance(t, str) and t for t in to):
        raise ActiveSyncError(f"{where}: to: expected an address or a list of them, got {to!r}")
    addresses = []
    for name in to:
        mailbox = state.store.mailbox(name)
        # A login name is accepted for convenience and turned into its address.
        addresses.append(mailbox.address if mailbox is not None and "@" not in name else name)
    fields: dict[str, str] = {}
    for key, default in (("subject", "(no subject)"), ("body", ""), ("from", "admin@example.com")):
        value = payload.get(key, default)
        if not isinstance(value, str) or len(value) > 100_000:
            raise ActiveSyncError(f"{where}: {key}: expected a string, got {value!r:.60}")
        fields[key] = value
    return mb.Message(
        subject=fields["subject"],
        sender=fields["from"],
        to=tuple(addresses),
        body=fields["body"],
        received=now,
    )


async def admin_mailboxes(request: web.Request) -> web.StreamResponse:
    """GET /admin/mailboxes: every mailbox's summary."""
    store = request.app[STATE].store
    return _json({"mailboxes": [m.summary() for m in store.mailboxes.values()]})


async def admin_mailbox(request: web.Request) -> web.StreamResponse:
    """GET /admin/mailboxes/{user}: one mailbox's folders and devices."""
    name = request.match_info["user"]
    mailbox = request.app[STATE].store.mailbox(name)
    if mailbox is None:
        raise ActiveSyncError(f"admin: no mailbox for {name[:80]!r}", http_status=404)
    return _json(mailbox.summary())


async def admin_wipe_device(request: web.Request) -> web.StreamResponse:
    """POST /admin/mailboxes/{user}/devices/{device}/wipe: ask the device to wipe itself."""
    state = request.app[STATE]
    name, device_id = request.match_info["user"], request.match_info["device"]
    mailbox = state.store.mailbox(name)
    if mailbox is None:
        raise ActiveSyncError(f"admin: no mailbox for {name[:80]!r}", http_status=404)
    state.provisioning.request_wipe(mailbox.user, device_id)
    machine = state.provisioning.machine(mailbox.user, device_id)
    return _json({"user": mailbox.user, "device_id": device_id, "state": machine.state.value})


async def admin_put_faults(request: web.Request) -> web.StreamResponse:
    """PUT /admin/faults: validate and activate a fault plan (docs/faults.md)."""
    raw = await _read_body(request, MAX_ADMIN_BODY)
    try:
        payload = json.loads(raw or b"null")
    except ValueError as exc:
        raise ActiveSyncError(f"admin {FAULTS_PATH}: body is not JSON: {exc}") from None
    faults = request.app[FAULTS]
    try:
        faults.set_mapping(payload, f"PUT {FAULTS_PATH}")
    except FaultError as exc:
        raise ActiveSyncError(str(exc)) from None
    return _json(faults.describe())


async def admin_get_faults(request: web.Request) -> web.StreamResponse:
    """GET /admin/faults: the active plan (or none) and its counters."""
    return _json(request.app[FAULTS].describe())


async def admin_delete_faults(request: web.Request) -> web.StreamResponse:
    """DELETE /admin/faults: clear every fault; hung requests are released."""
    faults = request.app[FAULTS]
    faults.clear()
    return _json(faults.describe())


# --- assembly ----------------------------------------------------------------------------------


def make_app(
    config: ExchangeConfig,
    *,
    clock: Clock | None = None,
    admin_token: str | None = None,
    faults: ExchangeFaults | None = None,
    lockout: Lockout | None = None,
) -> web.Application:
    """A fresh mock Exchange: seeded mailboxes, the device endpoint and the admin API.

    ``faults``: the fault switch to use (a fresh one by default); it is ``app[FAULTS]``
    either way (``exchange_sim.faults``). ``lockout``: the admin guard's failed-token table
    (a fresh one with the STIG defaults when None).
    """
    clock = SystemClock() if clock is None else clock
    store = mb.MailStore.for_users((u.name, u.email) for u in config.users)
    store.seed(config.seed_messages_per_mailbox, seed=config.seed, now=clock.now())
    faults = ExchangeFaults() if faults is None else faults
    injector = fault_middleware(
        faults.http, exempt=is_fault_admin, respond=_text_response, command_of=command_of
    )
    token = admin_token or secrets.token_urlsafe(24)
    # /admin/... needs the admin token (labauth: constant time, 3 wrong tokens lock the
    # client out for 15 minutes); the EAS endpoint authenticates users with Basic auth.
    guard = admin_guard(token, clock=clock, protected=_is_admin_route, lockout=lockout)
    app = web.Application(
        middlewares=[injector, error_middleware, guard],
        client_max_size=config.max_request_bytes + 1,
    )
    app[FAULTS] = faults
    app[STATE] = ServerState(
        config=config,
        store=store,
        clock=clock,
        notifier=ChangeNotifier(),
        admin_token=token,
        provisioning=ProvisioningBook(
            config.activesync_policy,
            require_device_information=config.require_device_information,
            seed=config.seed,
        ),
    )
    app.router.add_route("OPTIONS", ENDPOINT, handle_options)
    app.router.add_route("POST", ENDPOINT, handle_device)
    app.router.add_post("/admin/mail", admin_inject_mail)
    app.router.add_get("/admin/mailboxes", admin_mailboxes)
    app.router.add_get("/admin/mailboxes/{user}", admin_mailbox)
    app.router.add_post("/admin/mailboxes/{user}/devices/{device}/wipe", admin_wipe_device)
    app.router.add_put(FAULTS_PATH, admin_put_faults)
    app.router.add_get(FAULTS_PATH, admin_get_faults, allow_head=False)
    app.router.add_delete(FAULTS_PATH, admin_delete_faults)
    return app
