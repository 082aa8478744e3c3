"""Distributed load with Locust: simulated phones from ``device_sim`` as Locust users.

Responsibility: for runs that outgrow one machine's generator, a Locust user class whose every
request is built and read by a ``device_sim.DeviceClient`` (the same EAS behaviour as
``sentry-sim load``), sent through Locust's HTTP session so Locust's master aggregates the
statistics of all workers. The loopback rule holds here too: a ``--host`` that is not
127.0.0.0/8, ::1 or localhost stops the user before it sends anything. Locust is not a
dependency of sentry-sim: this module imports without it (``pip install locust`` to use it,
see docs/loadtest.md), and the class is made only when Locust is the one importing it.

Theory of operation: ``LocustDevice`` is the synchronous driver (Locust users run on gevent,
not asyncio): begin a step, send each request with the ``send`` function it was given, feed
the response to the client, follow Send/Backoff/Done/Halt, classify the step like the
generator does. ``EasDeviceUser`` (built by ``make_user_class`` when Locust is importable)
takes device number ``SENTRY_SIM_DEVICE_OFFSET + k`` (k counts users in this process) out of
``SENTRY_SIM_DEVICES`` registered devices of the lab made by ``sentry-sim load PROFILE
--write-lab-config``, warms up (Provision, FolderSync, Sync) and then syncs (weight 9) and
refreshes folders (weight 1) at ``SENTRY_SIM_USER_RATE`` operations per second per user.

TLS: with an ``https://`` host, ``SENTRY_SIM_CA`` names the lab's root PEM (``root.pem`` of a
TLS lab, also in its ready file as ``tls_root``); Locust's session (requests) then trusts only
that root (``verify``). ``SENTRY_SIM_CLIENT_CERT`` and ``SENTRY_SIM_CLIENT_KEY`` (PEM files)
present a client certificate for mutual TLS. The files are checked when the settings are read,
and a message names the variable and the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import itertools
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from device_sim import (
    Backoff,
    DeviceClient,
    DeviceIdentity,
    Done,
    FolderSync,
    Halt,
    HttpRequest,
    HttpResponse,
    Provision,
    Send,
    Step,
    StepResult,
    Sync,
)
from device_sim.shell import TlsSetupError, read_identity, read_root
from loadtest.profiles import device_id, mailbox
from loadtest.results import Outcome, classify
from loadtest.target import check_loopback

#: Longest back-off a Locust user honours (a load run should not sleep for an hour).
MAX_BACKOFF: Final = 30.0
#: Devices per worker when ``SENTRY_SIM_DEVICES`` is not set.
DEFAULT_DEVICES: Final = 40

#: (request, label) -> response; a transport failure raises ``ConnectionError``.
SendFunction = Callable[[HttpRequest, str], HttpResponse]


@attrs.define(eq=False)
class LocustDevice:
    """One simulated phone, driven synchronously through ``send``."""

    client: DeviceClient
    send: SendFunction
    sleep: Callable[[float], None] = time.sleep

    def run_step(self, step: Step) -> tuple[Outcome, int | None]:
        """Run ``step`` to its end; its outcome as the load generator classifies it."""
        request = self.client.begin(step)
        results: list[StepResult] = []
        label = step.name
        while True:
            try:
                response = self.send(request, label)
            except ConnectionError as exc:
                self.client.abandon(str(exc), time.time())
                return Outcome.CONNECTION_ERROR, None
            result = self.client.receive(response, time.time())
            results.append(result)
            action = result.action
            if isinstance(action, Send):
                request = action.request
            elif isinstance(action, Backoff):
                self.sleep(min(action.seconds, MAX_BACKOFF))
                request = action.request
            elif isinstance(action, Done):
                return classify(results, action.succeeded)
            else:
                assert isinstance(action, Halt)
                return classify(results, False)


@attrs.frozen(kw_only=True)
class Settings:
    """What the environment tells the Locust users (see the module docstring)."""

    devices: int = DEFAULT_DEVICES
    offset: int = 0
    password: str = "load-pass"
    version: str = "16.1"
    user_rate: float = 1.0
    #: PEM root to trust for an https host (None: plain http).
    ca: str | None = None
    #: PEM client certificate and key for mutual TLS.
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        def number(name: str, default: float) -> float:
            raw = environ.get(name)
            if raw is None:
                return default
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"{name}: expected a number, got {raw!r}") from None

        ca = environ.get("SENTRY_SIM_CA") or None
        cert = environ.get("SENTRY_SIM_CLIENT_CERT") or None
        key = environ.get("SENTRY_SIM_CLIENT_KEY") or None
        if ca is not None:
            try:
                read_root(ca)
            except TlsSetupError as exc:
                raise ValueError(f"SENTRY_SIM_CA: {exc}") from None
        if (cert is None) != (key is None):
            raise ValueError(
                "SENTRY_SIM_CLIENT_CERT and SENTRY_SIM_CLIENT_KEY: give both (PEM certificate "
                "and its key) or neither"
            )
        if cert is not None and key is not None:
            if ca is None:
                raise ValueError("SENTRY_SIM_CLIENT_CERT: needs SENTRY_SIM_CA (the lab's root)")
            try:
                read_identity(cert, key)
            except TlsSetupError as exc:
                name = (
                    "SENTRY_SIM_CLIENT_KEY"
                    if str(exc).startswith(f"{key}:")
                    else ("SENTRY_SIM_CLIENT_CERT")
                )
                raise ValueError(f"{name}: {exc}") from None
        return cls(
            ca=ca,
            client_cert=cert,
            client_key=key,
            devices=max(1, int(number("SENTRY_SIM_DEVICES", DEFAULT_DEVICES))),
            offset=max(0, int(number("SENTRY_SIM_DEVICE_OFFSET", 0))),
            password=environ.get("SENTRY_SIM_PASSWORD", "load-pass"),
            version=environ.get("SENTRY_SIM_VERSION", "16.1"),
            user_rate=max(0.001, number("SENTRY_SIM_USER_RATE", 1.0)),
        )

    def identity(self, k: int) -> DeviceIdentity:
        """The identity of this process's ``k``-th user (0-based)."""
        n = (self.offset + k) % self.devices + 1
        return DeviceIdentity(
            user=mailbox("registered", n),
            password=self.password,
            device_id=device_id("registered", n),
            device_type="iPhone",
            version=self.version,
        )


def locust_available() -> bool:
    return importlib.util.find_spec("locust") is not None


def make_user_class(settings: Settings | None = None) -> type[Any]:
    """The Locust ``HttpUser`` subclass (needs Locust installed)."""
    locust: Any = importlib.import_module("locust")
    chosen = settings or Settings.from_environ(os.environ)
    numbers = itertools.count()

    def on_start(self: Any) -> None:
        check_loopback(str(self.host), "locust --host")
        secure = str(self.host).lower().startswith("https://")
        if secure and chosen.ca is None:
            raise ValueError(
                "locust --host is https: set SENTRY_SIM_CA to the lab's root.pem (the system's "
                "trust store is never used for load)"
            )
        if chosen.ca is not None:
            # requests: a path in ``verify`` replaces the system store with that file.
            self.client.verify = chosen.ca
            if chosen.client_cert is not None:
                self.client.cert = (chosen.client_cert, chosen.client_key)

        def send(request: HttpRequest, label: str) -> HttpResponse:
            try:
                with self.client.request(
                    request.method,
                    self.host.rstrip("/") + request.path_and_query,
                    headers=dict(request.headers),
                    data=request.body or None,
                    name=label,
                    allow_redirects=False,
                    catch_response=True,
                ) as response:
                    # Blocked devices (403, Status 129/177) are answers, not failures; the
                    # step's classification is reported as a custom event below.
                    if response.status_code >= 500 or response.status_code == 0:
                        response.failure(f"HTTP {response.status_code}")
                    else:
                        response.success()
                    return HttpResponse(
                        response.status_code,
                        list(response.headers.items()),
                        response.content or b"",
                    )
            except OSError as exc:
                raise ConnectionError(str(exc)) from None

        self.device = LocustDevice(DeviceClient(chosen.identity(next(numbers))), send)
        for step in (Provision(), FolderSync(), Sync()):
            self.device.run_step(step)

    def run(self: Any, step: Step) -> None:
        outcome, code = self.device.run_step(step)
        self.environment.events.request.fire(
            request_type="eas-step",
            name=f"{step.name} -> {outcome.value}" + (f" {code}" if code else ""),
            response_time=0,
            response_length=0,
            exception=None
            if outcome in (Outcome.OK, Outcome.PROVISIONING, Outcome.BLOCKED)
            else RuntimeError(outcome.value),
        )

    def sync(self: Any) -> None:
        run(self, Sync())

    def folder_sync(self: Any) -> None:
        run(self, FolderSync())

    namespace = {
        "__doc__": "A simulated phone syncing through the gatekeeper (see loadtest.locustfile).",
        "wait_time": locust.constant_throughput(chosen.user_rate),
        "on_start": on_start,
        "tasks": {sync: 9, folder_sync: 1},
        "abstract": False,
    }
    return type("EasDeviceUser", (locust.HttpUser,), namespace)


# Only when Locust itself is loading this file: importing locust monkey-patches the standard
# library for gevent, which must never happen to a process that merely imports this module
# (the test suite, the load generator).
if "locust" in sys.modules:
    EasDeviceUser = make_user_class()
