"""Load profiles: the YAML that says what to run, validated into frozen values.

Responsibility: read a profile (``load_profile(path)`` or ``Profile.from_mapping(mapping,
source)``), check every key against its bounds and say exactly what is wrong where
(``hot_path.yaml: phases[0].duration: expected a duration like 5s or 250ms, got 'soon'``),
apply command-line overrides (``with_overrides``), and derive the lab configuration a
population needs (``lab_config``). It must not start anything or send traffic; target URLs
pass the loopback rule here, at the boundary.

Theory of operation: a profile is a target, a model (open: constant arrival rate; closed: a
fixed number of workers), sequential phases (each bounded by a duration and optionally a
request count, and each may change the rate/concurrency and the workload mix), a device
population (registered devices warmed up before measuring, registered-but-unseen devices and
unregistered devices for first accesses, devices holding Pings), events at moments of the run
(``uem: down``/``up``) and thresholds. Every run is bounded: each phase by its duration (at most
an hour in all) and by a request count (given, or the rate times the duration, or
``MAX_REQUESTS``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

from activesync.errors import ActiveSyncError
from activesync.versions import ProtocolVersion
from loadtest.results import Limits
from loadtest.target import Resolver, TargetError, TlsFiles, check_loopback, resolve
from loadtest.thresholds import (
    DecisionExpectation,
    Rule,
    Threshold,
    ThresholdError,
    parse_decisions,
)
from loadtest.units import UnitError, format_duration, parse_duration, parse_rate
from scenarios.yaml_text import YamlSyntaxError, parse_yaml

#: The longest run, all phases together.
MAX_RUN_SECONDS: Final = 3600.0
#: The most operations one run may start.
MAX_REQUESTS: Final = 10_000_000
MAX_RATE: Final = 100_000.0
MAX_CONCURRENCY: Final = 10_000
#: Devices of one population, all groups together.
MAX_DEVICES: Final = 100_000
MAX_HELD_PINGS: Final = 20_000
MAX_PHASES: Final = 32
MAX_EVENTS: Final = 64
MAX_PROFILE_BYTES: Final = 256 * 1024
#: The directory of the shipped profiles.
SHIPPED: Final = Path(__file__).resolve().parent / "profiles"


class ProfileError(ValueError):
    """A profile that cannot be run; the message names the file and the key."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        super().__init__(f"{source}: {path}: {problem}" if path else f"{source}: {problem}")
        self.source = source
        self.path = path
        self.problem = problem


class Op(enum.Enum):
    """Operations a workload mix draws from (held Pings run apart, see ``HeldPings``)."""

    #: A warm registered device syncs its Inbox (the hot path).
    SYNC = "sync"
    #: A warm registered device refreshes its folder hierarchy.
    FOLDERSYNC = "foldersync"
    #: A device the gatekeeper has never seen provisions (first access: report, decision).
    FIRST_ACCESS = "first_access"


class UemState(enum.Enum):
    """What a ``uem:`` event does to the UEM."""

    DOWN = "down"
    UP = "up"


@attrs.frozen
class OpenModel:
    """Constant arrival rate: arrivals are scheduled whatever the target does."""

    rate: float

    def describe(self) -> str:
        return f"open {self.rate:g}/s"


@attrs.frozen
class ClosedModel:
    """``concurrency`` workers, each starting its next operation when the last one ends.

    With ``interval``, each worker means to start one operation per interval, and latency is
    corrected for coordinated omission against it (``Histogram.record_corrected``).
    """

    concurrency: int
    interval: float | None = None

    def describe(self) -> str:
        every = f", one per {format_duration(self.interval)} each" if self.interval else ""
        return f"closed {self.concurrency} workers{every}"


Model = OpenModel | ClosedModel


@attrs.frozen(kw_only=True)
class Phase:
    """One stretch of the run."""

    name: str
    duration: float
    #: Operations started in the phase at most (None: rate x duration, or MAX_REQUESTS).
    requests: int | None = None
    #: Open model: this phase's arrival rate (None: the model's).
    rate: float | None = None
    #: Closed model: this phase's workers (None: the model's).
    concurrency: int | None = None
    #: This phase's workload mix (None: the profile's).
    workload: tuple[tuple[Op, float], ...] | None = None


@attrs.frozen(kw_only=True)
class Population:
    """The simulated devices, by group. Every device has a mailbox of its own."""

    #: Registered, compliant devices provisioned and synced in the warm-up (hot path).
    registered: int = 0
    #: Registered in the UEM but never seen by the gatekeeper: allowed at first access.
    new: int = 0
    #: Never enrolled: the UEM's auto-block blocks them at first access.
    unregistered: int = 0
    #: Protocol versions, handed out round-robin.
    versions: tuple[ProtocolVersion, ...] = (ProtocolVersion.V16_1,)
    device_type: str = "iPhone"
    password: str = "load-pass"


@attrs.frozen(kw_only=True)
class HeldPings:
    """``devices`` registered devices, each holding a Ping for ``heartbeat`` seconds in a loop."""

    devices: int
    heartbeat: int


@attrs.frozen(kw_only=True)
class Event:
    """Something done to the lab ``at`` seconds into the measured run."""

    at: float
    uem: UemState

    @property
    def label(self) -> str:
        return f"UEM {self.uem.value}"


class TargetKind(enum.Enum):
    #: Start a lab for the population inside the generator's process.
    LAB = "lab"
    #: Read a running lab's ready file.
    READY_FILE = "ready_file"
    #: URLs given in the profile.
    URLS = "urls"


@attrs.frozen(kw_only=True)
class TargetSpec:
    """Where the load goes."""

    kind: TargetKind
    ready_file: str | None = None
    #: For ``urls``: ready-file keys -> loopback URLs.
    urls: Mapping[str, str] = attrs.field(factory=dict)
    #: For ``lab``: sections merged into the generated lab config (``sentry:``, ``exchange:``,
    #: ``uem:``, ``lab:``; ``lab: {tls: true}`` makes the embedded lab speak TLS).
    lab_settings: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    #: For ``ready_file``/``urls``: the root to trust for https (and a client certificate).
    tls: TlsFiles | None = None


@attrs.frozen(kw_only=True)
class Options:
    """Knobs most profiles leave alone."""

    #: Time allowed for one operation (a held Ping gets its heartbeat on top).
    timeout: float = 10.0
    #: Operations in flight at most (open model); beyond it arrivals are dropped (invalid run).
    max_in_flight: int = 10_000
    #: Connections in the generator's pool (held Pings get one each on top).
    connections: int = 256
    #: Seed of the workload mix draw.
    seed: int = 1
    #: The warm-up's bound in time, and how many devices warm up at once.
    warmup_timeout: float = 60.0
    warmup_concurrency: int = 32
    limits: Limits = attrs.field(factory=Limits)


@attrs.frozen(kw_only=True)
class Profile:
    """A validated load profile."""

    name: str
    description: str
    source: str
    target: TargetSpec
    model: Model
    phases: tuple[Phase, ...]
    population: Population
    held_pings: HeldPings | None
    workload: tuple[tuple[Op, float], ...]
    events: tuple[Event, ...]
    rules: tuple[Rule, ...]
    options: Options

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.phases)

    def phase_rate(self, phase: Phase) -> float:
        assert isinstance(self.model, OpenModel)
        return phase.rate if phase.rate is not None else self.model.rate

    def phase_concurrency(self, phase: Phase) -> int:
        assert isinstance(self.model, ClosedModel)
        return phase.concurrency if phase.concurrency is not None else self.model.concurrency

    def phase_workload(self, phase: Phase) -> tuple[tuple[Op, float], ...]:
        return phase.workload if phase.workload is not None else self.workload

    def phase_bound(self, phase: Phase) -> int:
        """The most operations ``phase`` may start."""
        if phase.requests is not None:
            return phase.requests
        if isinstance(self.model, OpenModel):
            return min(MAX_REQUESTS, int(self.phase_rate(phase) * phase.duration) + 1)
        return MAX_REQUESTS

    def with_overrides(
        self,
        *,
        duration: float | None = None,
        rate: float | None = None,
        concurrency: int | None = None,
        ready_file: str | None = None,
    ) -> Profile:
        """Command-line overrides: ``duration`` scales every phase so they add up to it;
        ``rate`` (``concurrency``) becomes the model's and scales the phases' in proportion;
        ``ready_file`` replaces the target."""
        where = "command line"
        phases = list(self.phases)
        model = self.model
        if duration is not None:
            if not 0 < duration <= MAX_RUN_SECONDS:
                raise ProfileError(
                    where, "--duration", f"expected 0 < duration <= {MAX_RUN_SECONDS:g}s"
                )
            factor = duration / self.duration
            phases = [attrs.evolve(p, duration=p.duration * factor) for p in phases]
        if rate is not None:
            if not isinstance(model, OpenModel):
                raise ProfileError(where, "--rate", "this profile uses the closed model")
            if not 0 < rate <= MAX_RATE:
                raise ProfileError(where, "--rate", f"expected 0 < rate <= {MAX_RATE:g}/s")
            factor = rate / model.rate
            phases = [
                attrs.evolve(p, rate=None if p.rate is None else p.rate * factor) for p in phases
            ]
            model = OpenModel(rate)
        if concurrency is not None:
            if not isinstance(model, ClosedModel):
                raise ProfileError(where, "--concurrency", "this profile uses the open model")
            if not 0 < concurrency <= MAX_CONCURRENCY:
                raise ProfileError(where, "--concurrency", f"expected 1..{MAX_CONCURRENCY} workers")
            factor = concurrency / model.concurrency
            phases = [
                attrs.evolve(
                    p,
                    concurrency=None
                    if p.concurrency is None
                    else max(1, round(p.concurrency * factor)),
                )
                for p in phases
            ]
            model = attrs.evolve(model, concurrency=concurrency)
        target = self.target
        if ready_file is not None:
            # The profile's TLS files stay: they name the root of the lab being pointed at.
            target = TargetSpec(
                kind=TargetKind.READY_FILE, ready_file=ready_file, tls=self.target.tls
            )
        events = tuple(e for e in self.events)
        total = sum(p.duration for p in phases)
        late = [e for e in events if e.at >= total]
        if late:
            raise ProfileError(
                where,
                "--duration",
                f"the run would end at {format_duration(total)}, before the event at "
                f"{format_duration(late[0].at)} ({late[0].label}); give a longer duration",
            )
        return attrs.evolve(self, phases=tuple(phases), model=model, target=target)

    @classmethod
    def from_mapping(cls, mapping: object, source: str, *, resolver: Resolver = resolve) -> Profile:
        """Validate a profile mapping; ``source`` (the file name) starts every message."""
        r = _Reader(source)
        top = r.mapping(mapping, "", _TOP_KEYS)
        name = r.text(top.get("name", Path(source).stem), "name")
        description = r.text(top.get("description", ""), "description", allow_empty=True)
        target = _target(r, top.get("target", {"lab": "default"}), resolver)
        model = _model(r, top.get("model"))
        options = _options(r, top.get("options", {}))
        workload = _workload(r, top.get("workload", {"sync": 1}), "workload")
        phases = _phases(r, top.get("phases"), model)
        population = _population(r, top.get("population", {}))
        held = _held_pings(r, top.get("held_pings"))
        events = _events(r, top.get("events", []))
        rules = _rules(r, top.get("thresholds", []))
        profile = cls(
            name=name,
            description=description,
            source=source,
            target=target,
            model=model,
            phases=phases,
            population=population,
            held_pings=held,
            workload=workload,
            events=events,
            rules=rules,
            options=options,
        )
        _cross_checks(r, profile)
        return profile


def load_profile(path: str | Path, *, resolver: Resolver = resolve) -> Profile:
    """Read and validate a profile file; a bare name finds a shipped profile
    (``hot_path`` -> ``loadtest/profiles/hot_path.yaml``)."""
    file = Path(path)
    # A file the user named is named back as given; a shipped profile by its file name.
    source = str(path)
    if not file.exists() and file.suffix == "" and (SHIPPED / f"{file.name}.yaml").exists():
        file = SHIPPED / f"{file.name}.yaml"
        source = file.name
    try:
        raw = file.read_bytes()[: MAX_PROFILE_BYTES + 1]
    except OSError as exc:
        shipped = ", ".join(shipped_profiles())
        raise ProfileError(
            str(path), "", f"cannot read: {exc.strerror or exc} (shipped profiles: {shipped})"
        ) from None
    if len(raw) > MAX_PROFILE_BYTES:
        raise ProfileError(source, "", f"larger than {MAX_PROFILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(source, "", f"not UTF-8 text: {exc.reason}") from None
    try:
        data = parse_yaml(text, source)
    except YamlSyntaxError as exc:
        raise ProfileError(source, exc.where, f"not valid YAML: {exc.problem}") from None
    return Profile.from_mapping(data, source, resolver=resolver)


def shipped_profiles() -> list[str]:
    """Names of the profiles that ship in ``loadtest/profiles``."""
    return sorted(p.stem for p in SHIPPED.glob("*.yaml"))


# --- the generated lab ----------------------------------------------------------------------

#: Prefixes of the device ids (and mailboxes) of each population group.
GROUP_PREFIX: Final = {
    "registered": "LTREG",
    "new": "LTNEW",
    "unregistered": "LTUNR",
    "pinging": "LTPNG",
}


def device_id(group: str, n: int) -> str:
    """The device id of device ``n`` (from 1) of ``group``: ``LTREG000001``."""
    return f"{GROUP_PREFIX[group]}{n:06d}"


def mailbox(group: str, n: int) -> str:
    """The mailbox of device ``n`` of ``group``: ``ltreg000001``."""
    return device_id(group, n).lower()


def groups(profile: Profile) -> dict[str, int]:
    """Devices per population group (``pinging`` are the held-Ping devices)."""
    pop = profile.population
    return {
        "registered": pop.registered,
        "new": pop.new,
        "unregistered": pop.unregistered,
        "pinging": profile.held_pings.devices if profile.held_pings else 0,
    }


def lab_config(profile: Profile) -> dict[str, Any]:
    """The lab configuration (the ``sentry-sim lab --config`` format) this population needs:
    one mailbox per device, the registered groups enrolled in the UEM as compliant iPhones,
    auto-block on, no mailbox limit in the way, Exchange accepting short heartbeats."""
    users: list[dict[str, str]] = []
    devices: list[dict[str, object]] = []
    for group, count in groups(profile).items():
        for n in range(1, count + 1):
            name = mailbox(group, n)
            users.append(
                {
                    "name": name,
                    "email": f"{name}@load.example",
                    "password": profile.population.password,
                }
            )
            if group != "unregistered":
                devices.append(
                    {
                        "device_id": device_id(group, n),
                        "user": name,
                        "platform": "ios",
                        "os_version": "17.4",
                        "model": "iPhone15,2",
                        "compromised": False,
                        "data_protection": True,
                    }
                )
    config: dict[str, Any] = {
        "users": users,
        "uem": {
            "auto_block_unregistered": True,
            "max_devices_per_mailbox": 10,
            "devices": devices,
        },
        "sentry": {"uem_unreachable": "allow", "blocked_response": "eas"},
        "exchange": {"seed_messages_per_mailbox": 2, "heartbeat_min_s": 1},
    }
    for section, settings in profile.target.lab_settings.items():
        merged = dict(config.get(section) or {})
        merged.update(settings)
        config[section] = merged
    return config


# --- reading --------------------------------------------------------------------------------

_TOP_KEYS: Final = (
    "name",
    "description",
    "target",
    "model",
    "phases",
    "population",
    "held_pings",
    "workload",
    "events",
    "thresholds",
    "options",
)


@attrs.frozen
class _Reader:
    source: str

    def fail(self, path: str, problem: str) -> ProfileError:
        return ProfileError(self.source, path, problem)

    def mapping(
        self, value: object, path: str, keys: Sequence[str] | None = None
    ) -> Mapping[str, Any]:
        where = path or "(top level)"
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {_kind(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(where, f"keys must be strings, got {key!r}")
            if keys is not None and key not in keys:
                raise self.fail(_join(path, key), f"unknown key; expected one of {', '.join(keys)}")
        return value

    def sequence(self, value: object, path: str, limit: int) -> Sequence[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_kind(value)}")
        if len(value) > limit:
            raise self.fail(path, f"at most {limit} entries, got {len(value)}")
        return value

    def text(self, value: object, path: str, *, allow_empty: bool = False) -> str:
        if not isinstance(value, str) or (not value.strip() and not allow_empty):
            raise self.fail(path, f"expected text, got {_kind(value)}")
        if len(value) > 1000:
            raise self.fail(path, "longer than 1000 characters")
        return value.strip()

    def integer(self, value: object, path: str, low: int, high: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected a whole number {low}..{high}, got {_kind(value)}")
        if not low <= value <= high:
            raise self.fail(path, f"expected {low}..{high}, got {value}")
        return value

    def number(self, value: object, path: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"expected a number {low:g}..{high:g}, got {_kind(value)}")
        if not low <= float(value) <= high:
            raise self.fail(path, f"expected {low:g}..{high:g}, got {value}")
        return float(value)

    def duration(self, value: object, path: str, low: float, high: float) -> float:
        try:
            seconds = parse_duration(value)
        except UnitError as exc:
            raise self.fail(path, str(exc)) from None
        if not low < seconds <= high:
            raise self.fail(
                path,
                f"expected more than {format_duration(low)} and at most "
                f"{format_duration(high)}, got {value!r}",
            )
        return seconds

    def rate(self, value: object, path: str) -> float:
        try:
            rate = parse_rate(value)
        except UnitError as exc:
            raise self.fail(path, str(exc)) from None
        if rate > MAX_RATE:
            raise self.fail(path, f"at most {MAX_RATE:g}/s, got {value!r}")
        return rate


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, bool | int | float):
        return repr(value)
    return f"a {type(value).__name__}"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _target(r: _Reader, value: object, resolver: Resolver) -> TargetSpec:
    section = r.mapping(
        value,
        "target",
        (
            "lab",
            "lab_settings",
            "ready_file",
            "sentry_url",
            "sentry_admin_url",
            "uem_url",
            "uem_admin_url",
            "exchange_url",
            "tls",
        ),
    )
    chosen = [k for k in ("lab", "ready_file", "sentry_url") if k in section]
    if len(chosen) != 1:
        raise r.fail(
            "target",
            "give exactly one of lab: default (start a lab in-process), ready_file: PATH "
            f"(a running lab) or sentry_url: URL; got {', '.join(chosen) or 'none'}",
        )
    if "lab" in section:
        if section["lab"] != "default":
            raise r.fail("target.lab", f"expected default, got {_kind(section['lab'])}")
        if "tls" in section:
            raise r.fail(
                "target.tls",
                "the embedded lab makes its own root; to run it with TLS give "
                "lab_settings: {lab: {tls: true}}",
            )
        settings = r.mapping(
            section.get("lab_settings", {}),
            "target.lab_settings",
            ("sentry", "exchange", "uem", "lab"),
        )
        for key, sub in settings.items():
            r.mapping(sub, f"target.lab_settings.{key}")
        return TargetSpec(kind=TargetKind.LAB, lab_settings=dict(settings))
    if "lab_settings" in section:
        raise r.fail("target.lab_settings", "only with lab: default")
    tls = _tls(r, section["tls"]) if "tls" in section else None
    if "ready_file" in section:
        return TargetSpec(
            kind=TargetKind.READY_FILE,
            ready_file=r.text(section["ready_file"], "target.ready_file"),
            tls=tls,
        )
    urls: dict[str, str] = {}
    for key, url in section.items():
        if key == "tls":
            continue
        try:
            urls[key] = check_loopback(url, f"{r.source}: target.{key}", resolver=resolver)
        except TargetError as exc:
            raise ProfileError(r.source, "", str(exc).removeprefix(f"{r.source}: ")) from None
    secure = urls["sentry_url"].lower().startswith("https://")
    if secure and tls is None:
        raise r.fail(
            "target.tls",
            "sentry_url is https://: give tls: {ca: ROOT.pem} (the lab's root; the system's "
            "trust store is never used for load)",
        )
    if tls is not None and not secure:
        raise r.fail("target.tls", f"sentry_url is plain http ({urls['sentry_url']}); use https://")
    return TargetSpec(kind=TargetKind.URLS, urls=urls, tls=tls)


_TLS_KEYS: Final = ("ca", "client_cert", "client_key", "password_env")


def _tls(r: _Reader, value: object) -> TlsFiles:
    """``target.tls``: ``{ca: ROOT.pem, client_cert: FILE, client_key: FILE, password_env:
    VAR}``; the files are read when the run starts (``TlsFiles.load``)."""
    section = r.mapping(value, "target.tls", _TLS_KEYS)
    if "ca" not in section:
        raise r.fail("target.tls.ca", "missing: the PEM root the lab's certificates chain to")
    paths = {key: r.text(section[key], f"target.tls.{key}") for key in section}
    if "client_key" in paths and "client_cert" not in paths:
        raise r.fail("target.tls.client_key", "needs client_cert (the certificate of that key)")
    if "password_env" in paths and "client_cert" not in paths:
        raise r.fail("target.tls.password_env", "needs client_cert (the file it unlocks)")
    return TlsFiles(
        ca=paths["ca"],
        client_cert=paths.get("client_cert"),
        client_key=paths.get("client_key"),
        password_env=paths.get("password_env"),
        source=f"{r.source}: target.tls",
    )


def _model(r: _Reader, value: object) -> Model:
    if value is None:
        raise r.fail("model", "missing; give open: {rate: 200/s} or closed: {concurrency: 20}")
    section = r.mapping(value, "model", ("open", "closed"))
    if len(section) != 1:
        raise r.fail("model", "give exactly one of open: or closed:")
    if "open" in section:
        open_ = r.mapping(section["open"], "model.open", ("rate",))
        if "rate" not in open_:
            raise r.fail("model.open.rate", "missing; e.g. rate: 200/s")
        return OpenModel(r.rate(open_["rate"], "model.open.rate"))
    closed = r.mapping(section["closed"], "model.closed", ("concurrency", "interval"))
    if "concurrency" not in closed:
        raise r.fail("model.closed.concurrency", "missing; e.g. concurrency: 20")
    interval = None
    if closed.get("interval") is not None:
        interval = r.duration(closed["interval"], "model.closed.interval", 0.0, 3600.0)
    return ClosedModel(
        r.integer(closed["concurrency"], "model.closed.concurrency", 1, MAX_CONCURRENCY), interval
    )


def _workload(r: _Reader, value: object, path: str) -> tuple[tuple[Op, float], ...]:
    section = r.mapping(value, path, tuple(o.value for o in Op))
    mix = tuple(
        (Op(key), r.number(weight, _join(path, key), 0.0, 1e6)) for key, weight in section.items()
    )
    if not any(w > 0 for _, w in mix):
        raise r.fail(path, "give at least one operation a weight above 0, e.g. sync: 1")
    return tuple((op, w) for op, w in mix if w > 0)


def _phases(r: _Reader, value: object, model: Model) -> tuple[Phase, ...]:
    if value is None:
        raise r.fail("phases", "missing; e.g. phases: [{name: steady, duration: 5s}]")
    items = r.sequence(value, "phases", MAX_PHASES)
    if not items:
        raise r.fail("phases", "give at least one phase")
    phases = []
    for i, raw in enumerate(items):
        path = f"phases[{i}]"
        section = r.mapping(
            raw, path, ("name", "duration", "requests", "rate", "concurrency", "workload")
        )
        if "duration" not in section:
            raise r.fail(f"{path}.duration", "missing: every phase is bounded in time (e.g. 5s)")
        rate = concurrency = None
        if "rate" in section:
            if not isinstance(model, OpenModel):
                raise r.fail(f"{path}.rate", "rate belongs to the open model; use concurrency")
            rate = r.rate(section["rate"], f"{path}.rate")
        if "concurrency" in section:
            if not isinstance(model, ClosedModel):
                raise r.fail(f"{path}.concurrency", "concurrency belongs to the closed model")
            concurrency = r.integer(
                section["concurrency"], f"{path}.concurrency", 1, MAX_CONCURRENCY
            )
        phases.append(
            Phase(
                name=r.text(section.get("name", f"phase {i + 1}"), f"{path}.name"),
                duration=r.duration(section["duration"], f"{path}.duration", 0.0, MAX_RUN_SECONDS),
                requests=None
                if section.get("requests") is None
                else r.integer(section["requests"], f"{path}.requests", 1, MAX_REQUESTS),
                rate=rate,
                concurrency=concurrency,
                workload=None
                if section.get("workload") is None
                else _workload(r, section["workload"], f"{path}.workload"),
            )
        )
    total = sum(p.duration for p in phases)
    if total > MAX_RUN_SECONDS:
        raise r.fail(
            "phases", f"the phases add up to {format_duration(total)}; at most 1 hour in all"
        )
    return tuple(phases)


def _population(r: _Reader, value: object) -> Population:
    section = r.mapping(
        value,
        "population",
        ("registered", "new", "unregistered", "versions", "device_type", "password"),
    )
    counts = {
        key: r.integer(section.get(key, 0), f"population.{key}", 0, MAX_DEVICES)
        for key in ("registered", "new", "unregistered")
    }
    if sum(counts.values()) > MAX_DEVICES:
        raise r.fail("population", f"at most {MAX_DEVICES} devices in all")
    versions: list[ProtocolVersion] = []
    raw_versions = section.get("versions", ["16.1"])
    for i, raw in enumerate(r.sequence(raw_versions, "population.versions", 8)):
        try:
            versions.append(ProtocolVersion.from_text(str(raw)))
        except ActiveSyncError:
            known = ", ".join(v.text for v in ProtocolVersion)
            raise r.fail(
                f"population.versions[{i}]", f"expected one of {known}, got {_kind(raw)}"
            ) from None
    if not versions:
        raise r.fail("population.versions", "give at least one protocol version")
    device_type = r.text(section.get("device_type", "iPhone"), "population.device_type")
    if not device_type.isalnum() or len(device_type) > 32:
        raise r.fail("population.device_type", "expected 1-32 letters or digits, e.g. iPhone")
    return Population(
        registered=counts["registered"],
        new=counts["new"],
        unregistered=counts["unregistered"],
        versions=tuple(versions),
        device_type=device_type,
        password=r.text(section.get("password", "load-pass"), "population.password"),
    )


def _held_pings(r: _Reader, value: object) -> HeldPings | None:
    if value is None:
        return None
    section = r.mapping(value, "held_pings", ("devices", "heartbeat"))
    for key in ("devices", "heartbeat"):
        if key not in section:
            raise r.fail(f"held_pings.{key}", "missing")
    heartbeat = r.duration(section["heartbeat"], "held_pings.heartbeat", 0.999, 3540.0)
    return HeldPings(
        devices=r.integer(section["devices"], "held_pings.devices", 1, MAX_HELD_PINGS),
        # MS-ASCMD 2.2.3.88.1: HeartbeatInterval is a whole number of seconds.
        heartbeat=max(1, round(heartbeat)),
    )


def _events(r: _Reader, value: object) -> tuple[Event, ...]:
    out = []
    for i, raw in enumerate(r.sequence(value, "events", MAX_EVENTS)):
        path = f"events[{i}]"
        section = r.mapping(raw, path, ("at", "uem"))
        if "at" not in section or "uem" not in section:
            raise r.fail(path, "expected {at: 10s, uem: down} (or uem: up)")
        try:
            state = UemState(section["uem"])
        except ValueError:
            raise r.fail(
                f"{path}.uem", f"expected down or up, got {_kind(section['uem'])}"
            ) from None
        at = parse_duration_or_fail(r, section["at"], f"{path}.at")
        out.append(Event(at=at, uem=state))
    return tuple(sorted(out, key=lambda e: e.at))


def parse_duration_or_fail(r: _Reader, value: object, path: str) -> float:
    try:
        return parse_duration(value)
    except UnitError as exc:
        raise r.fail(path, str(exc)) from None


def _rules(r: _Reader, value: object) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    for i, raw in enumerate(r.sequence(value, "thresholds", 64)):
        path = f"thresholds[{i}]"
        try:
            if isinstance(raw, str):
                rules.append(Threshold.parse(raw))
            elif isinstance(raw, Mapping) and set(raw) == {"decisions"}:
                expectations: tuple[DecisionExpectation, ...] = parse_decisions(raw["decisions"])
                rules.extend(expectations)
            else:
                raise ThresholdError(
                    "expected a rule such as 'p99 < 5ms' or "
                    f"{{decisions: {{unregistered: blocked}}}}, got {_kind(raw)}"
                )
        except ThresholdError as exc:
            raise r.fail(path, str(exc)) from None
    return tuple(rules)


def _options(r: _Reader, value: object) -> Options:
    keys = (
        "timeout",
        "max_in_flight",
        "connections",
        "seed",
        "warmup_timeout",
        "warmup_concurrency",
        "max_cpu",
        "max_lag",
    )
    section = r.mapping(value, "options", keys)
    d = Options()
    limits = Limits(
        max_cpu=r.number(section.get("max_cpu", d.limits.max_cpu), "options.max_cpu", 0.05, 1.0),
        max_lag=r.duration(section.get("max_lag", d.limits.max_lag), "options.max_lag", 0.0, 60.0),
    )
    return Options(
        timeout=r.duration(section.get("timeout", d.timeout), "options.timeout", 0.0, 600.0),
        max_in_flight=r.integer(
            section.get("max_in_flight", d.max_in_flight), "options.max_in_flight", 1, 1_000_000
        ),
        connections=r.integer(
            section.get("connections", d.connections), "options.connections", 1, 100_000
        ),
        seed=r.integer(section.get("seed", d.seed), "options.seed", 0, 2**31 - 1),
        warmup_timeout=r.duration(
            section.get("warmup_timeout", d.warmup_timeout), "options.warmup_timeout", 0.0, 3600.0
        ),
        warmup_concurrency=r.integer(
            section.get("warmup_concurrency", d.warmup_concurrency),
            "options.warmup_concurrency",
            1,
            10_000,
        ),
        limits=limits,
    )


def _cross_checks(r: _Reader, profile: Profile) -> None:
    ops = {op for op, _ in profile.workload}
    for phase in profile.phases:
        ops.update(op for op, _ in profile.phase_workload(phase))
    pop = profile.population
    if ops & {Op.SYNC, Op.FOLDERSYNC} and pop.registered == 0:
        raise r.fail(
            "population.registered",
            "the workload has sync/foldersync, which need warm registered devices; give "
            "registered: N",
        )
    if Op.FIRST_ACCESS in ops and pop.new + pop.unregistered == 0:
        raise r.fail(
            "population",
            "the workload has first_access, which needs unseen devices; give new: N and/or "
            "unregistered: N",
        )
    if sum(groups(profile).values()) > MAX_DEVICES:
        raise r.fail("held_pings.devices", f"at most {MAX_DEVICES} devices in all")
    total = profile.duration
    for i, event in enumerate(profile.events):
        if event.at >= total:
            raise r.fail(
                f"events[{i}].at",
                f"{format_duration(event.at)} is not before the end of the run "
                f"({format_duration(total)})",
            )
