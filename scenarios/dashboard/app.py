"""The dashboard's web app: the page, its live stream, its controls and the exports.

Responsibility: serve the trainer's view of a running ``Lab`` on loopback: the static page
(``static/``, no build step, no external resource), ``/api/state`` (everything at once),
``/api/events/stream`` (server-sent events: every event as it happens, plus fresh views of the
gatekeeper's device list and the UEM's ActiveSync devices view), the controls (add or connect a
phone, postures, admin actions, UEM down/up, the virtual clock, slow motion) and the per-device
exports. It must not decide or speak EAS: the lab's actors do; it calls the lab's admin helpers
and runs ``device_sim`` runners, as a trainer at a terminal would.

Access: the page and the API answer only someone holding the lab's admin token. Opening
``/?token=TOKEN`` (or posting the token to ``/login``) sets an HttpOnly, SameSite=Strict cookie
that holds a digest of the token (never the token itself); scripts may send
``Authorization: Bearer TOKEN`` instead. Every POST under ``/api/`` must also carry the header
``X-Sentry-Sim-Dashboard: 1`` and, when the browser sends an ``Origin``, come from the page's own
origin: a form or script on another site can neither set that header without a CORS preflight
(which this app never grants) nor read any answer. Wrong tokens (``?token=``, the login form,
a Bearer header) count against the client address in a ``labauth.Lockout``, as on the admin
APIs: 3 wrong ones within 15 minutes lock that address out of the whole dashboard for 15
minutes (HTTP 429 with Retry-After, even with the right token), on the lab's clock. A missing
token or a stale cookie (left by an earlier lab on the same port) is not a guess and does not
count.

Theory of operation: a ``Hub`` subscribes to the gatekeeper's and the UEM's event buses and
folds each event into the pure ``FlowModel``; each resulting update goes to every connected
stream's bounded queue (a client that falls behind is dropped and its browser reconnects to a
fresh state). Events also wake a refresher that, coalescing bursts, reads the gatekeeper's list
in-process and the UEM's view over its admin API (the UEM may be down: the last view is kept
and marked stale); its outgoing TLS views only after a UEM TLS event or a control
(``tls_panel``). Phones started from the page run as background tasks, one at a time per
device, with an optional real-time pause between their steps (slow motion).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Final

import aiohttp
import attrs
from aiohttp import web

from device_sim.client import DeviceState, FolderSync, Halt, Provision, StepResult, Sync
from device_sim.client import Step as DeviceStep
from device_sim.shell import DeviceRunner, TransportError
from labauth import Locked, Lockout, LockoutPolicy, presented_token, token_matches
from labauth.middleware import client_of
from scenarios.dashboard import controls
from scenarios.dashboard.controls import ControlError
from scenarios.dashboard.export import to_jaeger, to_mermaid
from scenarios.dashboard.model import LANE_TITLES, LANES, FlowModel, Update
from scenarios.dashboard.tls_panel import OutgoingTlsFeed
from scenarios.flow import FIRST_CONTACT, STEP_TITLES
from scenarios.lab import DEVICE_TYPES, Lab, LabError
from sentry_sim.admin import record_json
from sentry_sim.device_list import record_key
from sentry_sim.events import Event as SentryEvent
from simclock import Clock, ManualClock
from uem_sim.events import Event as UemEvent

logger = logging.getLogger(__name__)

#: Header every control POST must carry (see the module docstring).
CONTROL_HEADER: Final = "X-Sentry-Sim-Dashboard"
#: Events queued per stream before a slow client is dropped.
STREAM_QUEUE: Final = 2000
#: Real seconds between keep-alive comments on an idle stream.
KEEPALIVE_S: Final = 15.0
#: Real seconds a burst of events is coalesced before the views are read again.
REFRESH_COALESCE_S: Final = 0.05
#: Real seconds allowed to read the UEM's view.
UEM_VIEW_TIMEOUT_S: Final = 3.0
#: Rows of the gatekeeper's list sent to the page.
MAX_ROWS: Final = 500
#: Phones run from the page at once.
MAX_PHONES: Final = 200
#: Log entries in a full state.
STATE_LOG: Final = 300


def _session_digest(token: str) -> str:
    """What the session cookie holds: a digest of the admin token, never the token."""
    return hmac.new(
        token.encode("utf-8"), b"sentry-sim dashboard session", hashlib.sha256
    ).hexdigest()


def cookie_name(port: int | None) -> str:
    """The session cookie's name; per port, since cookies ignore ports and labs may share a host."""
    return f"sentry_sim_dashboard_{port or 0}"


@attrs.define(eq=False)
class _Client:
    """One open event stream."""

    queue: asyncio.Queue[str | None] = attrs.field(
        factory=lambda: asyncio.Queue(maxsize=STREAM_QUEUE)
    )
    dropped: bool = False


@attrs.define(eq=False)
class Hub:
    """The live state behind the page: the model, the streams, the phones."""

    lab: Lab
    model: FlowModel = attrs.field(factory=FlowModel)
    #: Real seconds a phone pauses between its steps (0: no slow motion).
    slow_s: float = 0.0
    #: The Outgoing TLS panel (``tls_panel``): re-read after UEM TLS events and controls.
    outgoing_tls: OutgoingTlsFeed = attrs.field(factory=OutgoingTlsFeed)
    _clients: set[_Client] = attrs.field(factory=set)
    _runners: dict[str, DeviceRunner] = attrs.field(factory=dict)
    _locks: dict[str, asyncio.Lock] = attrs.field(factory=dict)
    _busy: set[str] = attrs.field(factory=set)
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set)
    _uem_view: dict[str, Any] = attrs.field(factory=dict)
    _wake: asyncio.Event = attrs.field(factory=asyncio.Event)
    _detach: list[Callable[[], None]] = attrs.field(factory=list)
    _closed: bool = False

    # -- lifecycle -------------------------------------------------------------------------
    def attach(self) -> None:
        self._detach.append(self.lab.bus.subscribe(self._on_sentry))
        self._detach.append(self.lab.uem_events.subscribe(self._on_uem))
        self._spawn(self._refresher())
        self._wake.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for detach in self._detach:
            detach()
        self._detach.clear()
        for client in tuple(self._clients):
            self.leave(client)
        tasks = tuple(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- events in, updates out ------------------------------------------------------------
    def _on_sentry(self, event: SentryEvent) -> None:
        self._send(self.model.take_sentry(event.to_json()))

    def _on_uem(self, event: UemEvent) -> None:
        self.outgoing_tls.saw(type(event).__name__)
        self._send(self.model.take_uem(event.to_dict()))

    def _send(self, update: Update) -> None:
        self.broadcast(update.to_json())
        self._wake.set()

    def broadcast(self, message: dict[str, Any]) -> None:
        if not self._clients:
            return  # nobody watching: the model still folds, nothing is encoded
        data = json.dumps(message, default=str)
        for client in tuple(self._clients):
            try:
                client.queue.put_nowait(data)
            except asyncio.QueueFull:
                # Too slow to follow: drop it; its EventSource reconnects to a fresh state.
                client.dropped = True
                self.leave(client)

    def join(self) -> _Client:
        client = _Client()
        self._clients.add(client)
        return client

    def leave(self, client: _Client) -> None:
        """Stop feeding ``client`` and tell its stream to end."""
        self._clients.discard(client)
        while True:
            try:
                client.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                client.queue.get_nowait()

    @property
    def clients(self) -> int:
        return len(self._clients)

    # -- views -----------------------------------------------------------------------------
    async def _refresher(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(REFRESH_COALESCE_S)
            self._wake.clear()
            if not self._clients:
                continue  # read the views only for someone; a new stream starts with them
            views = await self.views()
            self.broadcast({"type": "views", **views})

    async def views(self) -> dict[str, Any]:
        """The gatekeeper's device list, the UEM's views (ActiveSync devices, outgoing TLS)
        and the lab's status, read now."""
        return {
            "devices": self.sentry_devices(),
            "uem": await self.uem_view(),
            "outgoing_tls": await self.outgoing_tls.read(self.lab),
            "status": self.status(),
        }

    def sentry_devices(self) -> list[dict[str, Any]]:
        try:
            items = sorted(self.lab.sentry.devices.items())[:MAX_ROWS]
        except LabError:
            return []
        sent_ids = self._sent_device_ids()
        rows = []
        for key, record in items:
            row = record_json(key, record)
            # The gatekeeper keys records lower-cased; the UEM's admin API wants the id as sent.
            row["eas_device_id"] = sent_ids.get(key, row["device_id"])
            runner = self._runners.get(key)
            row["phone"] = runner.client.state.value if runner is not None else ""
            row["phone_busy"] = key in self._busy
            rows.append(row)
        return rows

    def _sent_device_ids(self) -> dict[str, str]:
        """Record key -> the device id as the phone sent it (the UEM is case-sensitive)."""
        ids = {record_key(d.user, d.device_id): d.device_id for d in self.lab.config.uem.devices}
        for rows in (self._uem_view.get("groups") or {}).values():
            for row in rows:
                ids[record_key(str(row["user"]), str(row["device_id"]))] = str(row["device_id"])
        for key, runner in self._runners.items():
            ids[key] = runner.client.identity.device_id
        return ids

    async def uem_view(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(UEM_VIEW_TIMEOUT_S):
                view = await self.lab.eas_devices()
        except (LabError, aiohttp.ClientError, TimeoutError) as exc:
            stale = dict(self._uem_view)
            stale["error"] = f"the UEM's view cannot be read: {exc or type(exc).__name__}"
            stale["stale"] = True
            return stale
        self._uem_view = {**view, "stale": False}
        return self._uem_view

    def status(self) -> dict[str, Any]:
        config = self.lab.config
        return {
            "now": self.lab.clock.now(),
            "virtual_clock": isinstance(self.lab.clock, ManualClock),
            "uem_listening": self.lab.uem_listening,
            "slow_motion_s": self.slow_s,
            "users": [u.name for u in config.users],
            "registered_devices": [
                {"user": d.user, "device_id": d.device_id, "platform": d.posture.platform}
                for d in config.uem.devices
            ],
            "versions": list(controls.VERSIONS),
            "seq": self.model.last_n,
        }

    async def state(self) -> dict[str, Any]:
        """Everything the page shows, at once."""
        views = await self.views()
        return {
            "type": "state",
            "lanes": [{"id": lane, "title": LANE_TITLES[lane]} for lane in LANES],
            "steps": {str(n): title for n, title in STEP_TITLES.items()},
            **views,
            **self.model.to_json(log_limit=STATE_LOG),
        }

    # -- phones ----------------------------------------------------------------------------
    def connect(self, user: str, device_id: str, version: str, platform: str | None) -> str:
        """Start a phone's first contact (a fresh phone) in the background; its record key."""
        key = record_key(user, device_id)
        if key in self._busy:
            raise ControlError(
                f"{key}: the phone is still busy with its last steps",
                hint="wait for it to finish (slow motion makes that longer)",
                status=409,
            )
        if len(self._runners) >= MAX_PHONES and key not in self._runners:
            raise ControlError(f"at most {MAX_PHONES} phones can be run from the dashboard")
        device_type = None if platform is None else DEVICE_TYPES.get(platform, "SmartPhone")
        runner = self.lab.device(
            user,
            device_id,
            version=version,
            device_type=device_type,
            on_result=lambda result: self._on_phone(key, result),
        )
        self._runners[key] = runner
        self._start(key, runner, FIRST_CONTACT)
        return key

    def sync(self, user: str, device_id: str) -> str:
        """The phone's next Sync (a first contact when it never got that far)."""
        key = record_key(user, device_id)
        runner = self._runners.get(key)
        if runner is None or runner.client.state is DeviceState.WIPED:
            version = "16.1" if runner is None else runner.client.identity.version.text
            return self.connect(user, device_id, version, None)
        if key in self._busy:
            raise ControlError(f"{key}: the phone is still busy with its last steps", status=409)
        steps: Sequence[DeviceStep]
        if runner.client.folder_named("Inbox") is None:
            steps = (Provision(), FolderSync(), Sync())
        else:
            steps = (Sync(),)
        self._start(key, runner, steps)
        return key

    def _start(self, key: str, runner: DeviceRunner, steps: Sequence[DeviceStep]) -> None:
        self._busy.add(key)
        self._spawn(self._drive(key, runner, steps))

    async def _drive(self, key: str, runner: DeviceRunner, steps: Sequence[DeviceStep]) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                for index, step in enumerate(steps):
                    if index and self.slow_s > 0:
                        # Slow motion is for people in a room: real seconds, not the lab clock.
                        await asyncio.sleep(self.slow_s)
                    try:
                        results, _ = await runner.run_step(step)
                    except TransportError as exc:
                        self._note(key, "phone_failed", f"phone: no answer ({exc})")
                        break
                    if results and isinstance(results[-1].action, Halt):
                        break
        except Exception as exc:
            # A phone that cannot go on is told in the log; the dashboard keeps serving.
            logger.exception("dashboard phone %s failed", key)
            self._note(key, "phone_failed", f"phone stopped: {exc}")
        finally:
            self._busy.discard(key)
            self._wake.set()

    def _on_phone(self, key: str, result: StepResult) -> None:
        self._send(self.model.take_device(key, result.to_json(), self.lab.clock.now()))

    def _note(self, key: str, kind: str, text: str) -> None:
        self._send(self.model.note(key, kind, text, self.lab.clock.now()))

    def refresh(self) -> None:
        """Read the views again soon (after a control changed the lab)."""
        self.outgoing_tls.mark()
        self._wake.set()

    def note(self, key: str, kind: str, text: str) -> None:
        """Log what the trainer did."""
        self._note(key, kind, text)


HUB: Final = web.AppKey("dashboard_hub", Hub)
TOKEN: Final = web.AppKey("dashboard_token", str)
#: Failed token attempts per client address (``labauth``; 3 in 15 minutes lock for 15).
LOCKOUT: Final = web.AppKey("dashboard_lockout", Lockout)
#: The clock the lockout reads (the lab's: a virtual clock unlocks when it is advanced).
AUTH_CLOCK: Final = web.AppKey("dashboard_auth_clock", Clock)


# --- access -----------------------------------------------------------------------------------


def _locked(request: web.Request) -> Locked | None:
    """The client's lock, or None while it may try a token."""
    return request.app[LOCKOUT].locked(client_of(request), request.app[AUTH_CLOCK].now())


def _token_given(request: web.Request, given: str) -> bool:
    """Whether ``given`` is the lab's token; a wrong one counts against the client (and the
    log names the client and the count, never what was presented)."""
    lockout = request.app[LOCKOUT]
    client = client_of(request)
    if token_matches(given, request.app[TOKEN]):
        lockout.succeeded(client)
        return True
    failure = lockout.failed(client, request.app[AUTH_CLOCK].now())
    logger.warning(
        "dashboard: wrong admin token from %s on %s %s (%d of %d)%s",
        client,
        request.method,
        request.path,
        failure.failures,
        failure.max_failures,
        "" if failure.locked is None else f"; locked out for {failure.locked.retry_after_s} s",
    )
    return False


def _authorised(request: web.Request) -> bool:
    """A right Bearer token (a wrong one counts as a failed attempt) or the session cookie."""
    presented = presented_token(request)
    if presented is not None:
        return _token_given(request, presented)
    cookie = request.cookies.get(cookie_name(request.url.port), "")
    digest = _session_digest(request.app[TOKEN])
    return hmac.compare_digest(cookie.encode("utf-8"), digest.encode("utf-8"))


def _lock_message(request: web.Request, lock: Locked) -> str:
    policy = request.app[LOCKOUT].policy
    return (
        f"too many wrong admin tokens from {client_of(request)}: locked out for "
        f"{lock.retry_after_s} more seconds ({policy.max_failures} wrong tokens lock a client "
        f"for {policy.lock_s:g} s)"
    )


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin == f"{request.scheme}://{request.host}"


@web.middleware
async def guard(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Token for everything under /api/; the control header and same origin for its POSTs."""
    path = request.path
    lock = _locked(request) if path.startswith("/api/") or path in ("/", "/login") else None
    if lock is not None:
        # Locked: refused whatever it presents, the right token included (docs/security.md).
        retry = {"Retry-After": str(lock.retry_after_s)}
        if path.startswith("/api/"):
            error = ControlError(
                _lock_message(request, lock),
                hint=f"wait {lock.retry_after_s} s (Retry-After), then use the right token",
                status=429,
            )
            return web.json_response(error.to_json(), status=429, headers=retry)
        response = _login(_lock_message(request, lock) + ".", 429)
        response.headers.update(retry)
        return response
    if path.startswith("/api/"):
        if not _authorised(request):
            return _error(
                ControlError(
                    "the dashboard needs the lab's admin token",
                    hint="open the page with ?token=<admin_token from the ready file>, or send "
                    "Authorization: Bearer <token>",
                    status=401,
                )
            )
        if request.method != "GET" and (
            request.headers.get(CONTROL_HEADER) != "1" or not _same_origin(request)
        ):
            return _error(
                ControlError(
                    f"control requests need the header {CONTROL_HEADER}: 1 and the page's origin",
                    hint="the dashboard page sends it; a script can send it too",
                    status=403,
                )
            )
    try:
        return await handler(request)
    except ControlError as exc:
        return _error(exc)
    except LabError as exc:
        return _error(ControlError(str(exc), status=409))


def _error(exc: ControlError) -> web.Response:
    return web.json_response(exc.to_json(), status=exc.status)


# --- the page -----------------------------------------------------------------------------------


def _static(name: str) -> bytes:
    return resources.files("scenarios.dashboard").joinpath("static", name).read_bytes()


_LOGIN_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sentry-sim dashboard: sign in</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body class="login"><main>
<h1>sentry-sim dashboard</h1>
<p>{message}</p>
<form method="post" action="/login">
<label for="token">Admin token (the <code>admin_token</code> key of the lab's ready file)</label>
<input id="token" name="token" type="password" autocomplete="off" required autofocus>
<button type="submit">Open the dashboard</button>
</form></main></body></html>
"""


def _login(message: str, status: int) -> web.Response:
    return web.Response(
        text=_LOGIN_PAGE.format(message=message), status=status, content_type="text/html"
    )


def _signed_in(request: web.Request) -> web.Response:
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(
        cookie_name(request.url.port),
        _session_digest(request.app[TOKEN]),
        httponly=True,
        samesite="Strict",
        path="/",
    )
    return response


async def page(request: web.Request) -> web.StreamResponse:
    given = request.query.get("token")
    if given is not None:
        if _token_given(request, given):
            # Set the cookie and drop the token from the address bar (and the history).
            return _signed_in(request)
        return _login("That token is not this lab's admin token.", 401)
    if not _authorised(request):
        return _login("Give the lab's admin token to open the live view.", 401)
    return web.Response(body=_static("index.html"), content_type="text/html", charset="utf-8")


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    given = form.get("token")
    if isinstance(given, str) and given and _token_given(request, given):
        return _signed_in(request)
    return _login("That token is not this lab's admin token.", 401)


_TYPES: Final = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}


async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if suffix not in _TYPES or "/" in name or name.startswith("."):
        raise web.HTTPNotFound()
    try:
        body = _static(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    return web.Response(
        body=body,
        content_type=_TYPES[suffix],
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


# --- the API ------------------------------------------------------------------------------------


async def get_state(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HUB].state(), dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)


async def stream(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    # Join before reading the state: nothing can fall between the two (the page skips updates
    # it already has by their number).
    client = hub.join()
    try:
        await response.write(_sse(_dumps(await hub.state())))
        while True:
            try:
                async with asyncio.timeout(KEEPALIVE_S):
                    data = await client.queue.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if data is None:
                break
            await response.write(_sse(data))
    except ConnectionResetError:
        pass  # the browser went away
    finally:
        hub.leave(client)
    return response


def _sse(data: str) -> bytes:
    return f"data: {data}\n\n".encode()


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > controls.MAX_BODY:
        raise ControlError(f"request body: more than the {controls.MAX_BODY} bytes allowed")
    return controls.decode_body(await request.content.read(controls.MAX_BODY + 1))


def _device(request: web.Request) -> tuple[str, str]:
    user = controls.user_name(request.match_info["user"], "user (path)")
    device = controls.device_id(request.match_info["device_id"], "device_id (path)")
    return user, device


def _check_user(hub: Hub, user: str) -> None:
    if hub.lab.config.user(user) is None:
        names = ", ".join(u.name for u in hub.lab.config.users)
        raise ControlError(
            f"request body: $.user: no lab user {user!r}; expected one of {names}", field="user"
        )


async def add_device(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    wanted = controls.parse_add_device(await _body(request))
    _check_user(hub, wanted.user)
    platform = None
    if wanted.register is not None:
        posture = wanted.register
        platform = posture.platform
        await hub.lab.uem(
            "POST",
            "/api/v1/admin/devices",
            {
                "user": wanted.user,
                "device_id": wanted.device_id,
                "platform": posture.platform,
                "os_version": posture.os_version,
                "compromised": posture.compromised,
                "data_protection": posture.data_protection,
                "model": "Simulated " + posture.platform,
            },
        )
    key = record_key(wanted.user, wanted.device_id)
    registered = "registered" if wanted.register else "unregistered"
    hub.note(key, "trainer_add", f"trainer: add {registered} phone {key} (EAS {wanted.version})")
    hub.connect(wanted.user, wanted.device_id, wanted.version, platform)
    return web.json_response({"record": key, "started": True}, status=202)


async def sync_device(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    user, device = _device(request)
    _check_user(hub, user)
    key = hub.sync(user, device)
    return web.json_response({"record": key, "started": True}, status=202)


async def device_action(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    user, device = _device(request)
    action = controls.parse_action(await _body(request))
    hub.note(record_key(user, device), "trainer_action", f"trainer: {action.action}")
    result = await hub.lab.admin_action(user, device, action.action, action.note)
    return web.json_response({"record": record_key(user, device), "uem": result})


async def device_posture(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    user, device = _device(request)
    change = controls.parse_posture(await _body(request))
    shown = ", ".join(f"{k}={v}" for k, v in change.to_json().items())
    hub.note(record_key(user, device), "trainer_posture", f"trainer: posture {shown}")
    result = await hub.lab.set_posture(user, device, **change.to_json())
    return web.json_response({"record": record_key(user, device), "uem": result})


async def set_uem(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    up = controls.parse_uem_state(await _body(request))
    hub.note("", "trainer_uem", f"trainer: UEM {'up' if up else 'down'}")
    if up:
        await hub.lab.uem_online()
    else:
        await hub.lab.uem_offline()
    hub.refresh()
    return web.json_response({"uem_listening": hub.lab.uem_listening})


async def advance_clock(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    seconds = controls.parse_advance(await _body(request))
    clock = hub.lab.clock
    if not isinstance(clock, ManualClock):
        raise ControlError(
            "the lab runs on the system clock, which cannot be advanced",
            field="advance_s",
            hint="start the lab with a virtual clock (Lab(config, clock=ManualClock()))",
            status=409,
        )
    hub.note("", "trainer_clock", f"trainer: advance the clock {seconds:g} s")
    await clock.advance(seconds)
    hub.refresh()
    return web.json_response({"now": clock.now()})


async def reset_outgoing_tls(request: web.Request) -> web.Response:
    """The UEM's outgoing TLS back to the default (its admin API; restarts its outgoing client)."""
    hub = request.app[HUB]
    hub.note("", "trainer_outgoing_tls", "trainer: reset the UEM's outgoing TLS to the default")
    result = await hub.outgoing_tls.reset(hub.lab)
    hub.refresh()
    return web.json_response(result)


async def slow_motion(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    hub.slow_s = controls.parse_slow_motion(await _body(request))
    hub.refresh()
    return web.json_response({"slow_motion_s": hub.slow_s})


def _flow(request: web.Request) -> tuple[str, Any]:
    hub = request.app[HUB]
    user, device = _device(request)
    key = record_key(user, device)
    arrows = hub.model.flow(key)
    if not arrows:
        raise ControlError(
            f"no flow for {key}: nothing happened to that device yet",
            hint="records are keyed user/device_id, lower-cased; GET /api/state lists the flows",
            status=404,
        )
    return key, arrows


async def export_mermaid(request: web.Request) -> web.Response:
    key, arrows = _flow(request)
    return web.Response(text=to_mermaid(key, arrows), content_type="text/plain", charset="utf-8")


async def export_jaeger(request: web.Request) -> web.Response:
    key, arrows = _flow(request)
    return web.json_response(to_jaeger(key, arrows))


def make_dashboard_app(lab: Lab, *, lockout: Lockout | None = None) -> web.Application:
    """The dashboard of ``lab`` (serve it on loopback; it trusts the lab's admin token).

    ``lockout``: the failed-attempt table (a fresh one with the STIG defaults when None; pass
    one to share it with another app or to set a ``LockoutPolicy``)."""
    app = web.Application(middlewares=[guard], client_max_size=controls.MAX_BODY)
    app[TOKEN] = lab.admin_token
    app[LOCKOUT] = lockout if lockout is not None else Lockout(LockoutPolicy())
    app[AUTH_CLOCK] = lab.clock

    async def hub_ctx(app: web.Application) -> AsyncIterator[None]:
        hub = Hub(lab)
        app[HUB] = hub
        hub.attach()
        yield
        await hub.close()

    async def end_streams(app: web.Application) -> None:
        # Before the server waits for open connections: let every stream finish now.
        await app[HUB].close()

    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(end_streams)
    devices = "/api/devices/{user}/{device_id}"
    app.add_routes(
        [
            web.get("/", page),
            web.post("/login", login),
            web.get("/static/{name}", static),
            web.get("/api/state", get_state),
            web.get("/api/events/stream", stream),
            web.post("/api/devices", add_device),
            web.post(devices + "/sync", sync_device),
            web.post(devices + "/action", device_action),
            web.post(devices + "/posture", device_posture),
            web.get(devices + "/mermaid", export_mermaid),
            web.get(devices + "/jaeger", export_jaeger),
            web.post("/api/uem", set_uem),
            web.post("/api/clock", advance_clock),
            web.post("/api/outgoing-tls/reset", reset_outgoing_tls),
            web.post("/api/slow-motion", slow_motion),
        ]
    )
    return app
