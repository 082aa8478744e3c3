"""Scenario files: a lab, named phones and a timeline of steps with expectations, validated.

Responsibility: read a scenario YAML file (``load_scenario``) or an already-loaded mapping
(``parse_scenario``) into a frozen ``Scenario`` whose every field is checked, or raise one
``ScenarioError`` naming the file, the field's path (``steps[4].expect.gatekeeper.state``), what
was expected, what arrived, the closest valid name when one was misspelt, and the line. Must
not: start a lab, send traffic or read any file but the scenario and the lab it names. The
format is documented with examples in ``docs/scenarios.md``; the step classes are in
``scenarios.spec_steps``.

Theory of operation:

1. Top level: ``name``, ``description``, ``tags``, ``lab`` (a path relative to the scenario
   file, or the lab mapping inline), ``lab_overrides`` (deep-merged onto the lab: mappings
   merge key by key, anything else replaces), ``devices`` (named phones) and ``steps``.
2. The lab is validated with the lab's own loader, ``scenarios.lab.LabConfig.from_mapping``
   (which hands each section to its actor's reader), first the referenced file alone (errors
   name that file), then with the overrides (errors name ``lab_overrides``).
3. Devices are parsed first (names, ids, protocol), then the steps (which may name only
   declared devices), then each phone's password is taken from its user in the lab, or from an
   ``add_user`` step, unless the phone sets one. A phone's ``client_certificate:`` (mutual
   TLS) is checked against the effective lab: it needs TLS and a gatekeeper that asks for
   client certificates (``lab.tls.client_certificates``).
4. Every step is a one-key mapping: the key is the kind, the value its argument, either a
   scalar shorthand (``- connect: alice-phone``, ``- advance: 25h``, ``- uem: down``) or a
   mapping (``- ping: {device: alice-phone, heartbeat: 300}``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import attrs

from activesync.versions import ProtocolVersion
from device_sim.wire import QueryForm, Quirk
from exchange_sim.faults import ExchangeFaults
from labfaults import FaultControl, FaultError
from labpki import ClientCertMode
from labpki.hierarchy import MAX_COMMON_NAME
from scenarios.lab import TOP_LEVEL_KEYS, LabConfig, LabConfigError
from scenarios.spec_read import (
    MAX_DEPTH,
    Fields,
    ScenarioError,
    freeze,
    join_path,
    line_index,
    line_of,
    show,
    suggest,
    thaw,
)
from scenarios.spec_steps import (
    COUNTERS,
    DEVICE_SAW,
    DEVICE_STATES,
    EVENT_TYPES,
    FAULT_ACTORS,
    GATEKEEPER_STATES,
    REASON_NAMES,
    UEM_GROUPS,
    UEM_STATES,
    AddUser,
    Advance,
    ChangePolicy,
    CheckIn,
    ClearFaults,
    ClientCertificate,
    ComplianceCheck,
    CounterExpectation,
    DeviceAction,
    DeviceExpectation,
    DeviceSpec,
    DeviceStep,
    EventExpectation,
    Expect,
    Fault,
    GatekeeperExpectation,
    PostureChange,
    RecordAction,
    RecordRef,
    Register,
    Resync,
    Say,
    SetFaults,
    SetPosture,
    Step,
    UemExpectation,
    Unregister,
    Window,
    event_type,
)
from scenarios.yaml_text import YamlSyntaxError, parse_yaml
from uem_sim.config import POLICY_KEYS, POSTURE_KEYS, Reader, parse_policy, parse_user
from uem_sim.contract import Reason
from uem_sim.errors import ConfigError as UemConfigError
from uem_sim.model import AdminAction, UemPolicy, strip_domain

#: The largest scenario or lab file read.
MAX_FILE_BYTES: Final = 1024 * 1024
#: Top-level keys of a scenario file.
TOP_KEYS: Final = (
    "name",
    "description",
    "tags",
    "gatekeepers",
    "lab",
    "lab_overrides",
    "devices",
    "steps",
)
#: The most gatekeepers a scenario may run against the lab's one UEM.
MAX_GATEKEEPERS: Final = 4
#: What ``- gatekeeper: <action>`` can do.
GATEKEEPER_ACTIONS: Final = ("resync", "push_down", "push_up")
#: What ``- clear_faults:`` can name: one server, or both.
CLEAR_FAULTS_TARGETS: Final = (*FAULT_ACTORS, "all")
#: Sections of a lab file (``scenarios.lab`` owns them).
LAB_SECTIONS: Final = TOP_LEVEL_KEYS
#: Keys of one named phone.
DEVICE_KEYS: Final = (
    "user",
    "password",
    "device_id",
    "device_type",
    "version",
    "query",
    "quirks",
    "model",
    "os",
    "user_agent",
    "gatekeeper",
    "client_certificate",
)
#: Keys of a device's ``client_certificate:`` mapping.
CLIENT_CERTIFICATE_KEYS: Final = ("user", "device_id")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_DEVICE_TYPE = re.compile(r"[^\s-]{1,32}")
_USER = re.compile(r"[^\s/]{1,256}")
_EAS_DEVICE_ID = re.compile(r"[^\s/]{1,128}")
_VERSIONS: Final = {v.text: v for v in ProtocolVersion}


@attrs.frozen(kw_only=True)
class LabSpec:
    """The lab a scenario runs in: ``mapping`` is the effective lab (file + overrides).

    ``file`` is the referenced lab file (resolved path) or None for an inline lab. The runner
    hands ``to_mapping()`` to the lab's config loader.
    """

    mapping: Mapping[str, Any]
    file: str | None = None
    overrides: Mapping[str, Any] = attrs.field(factory=lambda: freeze({}))

    def to_mapping(self) -> dict[str, Any]:
        plain: dict[str, Any] = thaw(self.mapping)
        return plain


@attrs.frozen(kw_only=True)
class Scenario:
    """A validated scenario file."""

    name: str
    description: str
    source: str  #: the file it came from (as given to ``load_scenario``)
    tags: tuple[str, ...]
    lab: LabSpec
    devices: Mapping[str, DeviceSpec]
    steps: tuple[Step, ...]
    #: How many gatekeepers run against the lab's UEM (1: the lab's own).
    gatekeepers: int = 1


LabReader = Callable[[Path], object]


@attrs.frozen
class LabUser:
    """A user a phone may log in as: from the lab's ``users:`` or an ``add_user`` step."""

    name: str
    email: str
    password: str = attrs.field(repr=False)


def read_yaml_file(path: Path, source: str | None = None) -> tuple[object, str]:
    """(data, text) of a YAML file; unreadable or malformed files raise ``ScenarioError``."""
    name = source or str(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ScenarioError(name, "", f"cannot read the file: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ScenarioError(name, "", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(name, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = parse_yaml(text, name)
    except YamlSyntaxError as exc:
        where = "" if exc.column is None else f" at column {exc.column}"
        problem = f"not valid YAML: {exc.problem}{where}"
        raise ScenarioError(name, "", problem, line=exc.line) from None
    return data, text


def read_lab_file(path: Path) -> object:
    """The default lab reader of ``parse_scenario``: the lab file's YAML data."""
    data, _ = read_yaml_file(path)
    return data


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; errors name the file, the field and the line."""
    source = str(path)
    data, text = read_yaml_file(Path(path), source)
    try:
        scenario = parse_scenario(data, source, base_dir=Path(path).parent)
    except ScenarioError as exc:
        if exc.source != source or exc.line is not None:
            raise
        raise exc.at_line(line_of(line_index(text), exc.path)) from None
    lines = line_index(text)
    steps = tuple(attrs.evolve(s, line=lines.get(f"steps[{s.index}]")) for s in scenario.steps)
    return attrs.evolve(scenario, steps=steps)


def parse_scenario(
    mapping: object,
    source: str,
    *,
    base_dir: Path | None = None,
    read_lab: LabReader = read_lab_file,
) -> Scenario:
    """Validate a loaded scenario ``mapping``; ``source`` names it in errors.

    ``lab: FILE`` is resolved against ``base_dir`` (default: the directory of ``source``) and
    read with ``read_lab``.
    """
    fields = Fields(source)
    if mapping is None:
        raise fields.fail("", "the file is empty; expected a mapping with steps:")
    try:
        top = fields.mapping(mapping, "", TOP_KEYS, required=("steps",))
        return _Parser(fields, base_dir or Path(source).parent, read_lab).scenario(top)
    except RecursionError:
        raise fields.fail("", f"nested deeper than {MAX_DEPTH} levels") from None


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``: mappings merge key by key; anything else replaces."""
    merged: dict[str, Any] = dict(base)
    for key, value in overrides.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def validate_lab(mapping: object, source: str, prefix: str) -> tuple[LabUser, ...]:
    """Check a lab mapping with the lab's own loader (``scenarios.lab.LabConfig``, which hands
    each section to its actor's reader); return the lab's users.

    Errors name ``source`` and the key path under ``prefix`` (``lab.uem.devices[2].user``).
    """
    config = _lab_config(mapping, source, prefix)
    return tuple(LabUser(u.name, u.email, u.password) for u in config.users)


def _lab_config(mapping: object, source: str, prefix: str) -> LabConfig:
    """``validate_lab``'s check, returning the whole effective ``LabConfig``."""
    fields = Fields(source)
    top = fields.mapping({} if mapping is None else mapping, prefix, LAB_SECTIONS)
    try:
        config = LabConfig.from_mapping(top, source)
    except LabConfigError as exc:
        text = str(exc).removeprefix(f"{source}: ")
        path, sep, problem = text.partition(": ")
        if not sep or " " in path:  # no key path in the message: the problem is the lab itself
            path, problem = "", text
        raise ScenarioError(source, join_path(prefix, path) if path else prefix, problem) from None
    except (TypeError, ValueError) as exc:
        raise ScenarioError(source, prefix, str(exc)) from None
    return config


@attrs.define(eq=False)
class _Parser:
    """One parse: the reader, where the file lives, and what has been declared so far."""

    fields: Fields
    base_dir: Path
    read_lab: LabReader
    devices: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    added_users: list[LabUser] = attrs.field(factory=list)
    gatekeepers: int = 1
    #: Whether the lab speaks TLS (``lab.tls``), and whether its gatekeeper asks phones for
    #: client certificates (the effective ``sentry.tls.device.client_certificates``).
    lab_tls: bool = False
    client_cert_mode: ClientCertMode = ClientCertMode.OFF

    # --- top level ---

    def scenario(self, top: Mapping[str, Any]) -> Scenario:
        f = self.fields
        name = Path(f.source).stem or "scenario"
        if "name" in top:
            name = f.string(top["name"], "name", max_len=200)
        description = ""
        if "description" in top and top["description"] is not None:
            description = f.string(top["description"], "description", empty=True, max_len=65_536)
        tags: tuple[str, ...] = ()
        if "tags" in top and top["tags"] is not None:
            tags = tuple(
                f.string(t, f"tags[{i}]", pattern=_NAME, what="a tag like limits")
                for i, t in enumerate(f.sequence(top["tags"], "tags"))
            )
        if top.get("gatekeepers") is not None:
            self.gatekeepers = f.integer(top["gatekeepers"], "gatekeepers", 1, MAX_GATEKEEPERS)
        lab, lab_users = self.lab(top.get("lab"), top.get("lab_overrides"))
        raw_devices = top.get("devices")
        for device_name, raw in f.mapping(
            {} if raw_devices is None else raw_devices, "devices"
        ).items():
            self.device(device_name, raw)
        raw_steps = f.sequence(top["steps"], "steps")
        if not raw_steps:
            raise f.fail("steps", "expected at least one step")
        steps = tuple(self.step(i, raw) for i, raw in enumerate(raw_steps))
        devices = self.finish_devices((*lab_users, *self.added_users))
        return Scenario(
            name=name,
            description=description,
            source=f.source,
            tags=tags,
            lab=lab,
            devices=freeze(devices),
            steps=steps,
            gatekeepers=self.gatekeepers,
        )

    def lab(self, raw: object, raw_overrides: object) -> tuple[LabSpec, tuple[LabUser, ...]]:
        f = self.fields
        overrides = f.mapping({} if raw_overrides is None else raw_overrides, "lab_overrides")
        lab_file: str | None = None
        if isinstance(raw, str):
            relative = f.string(raw, "lab", what="a lab file path or an inline lab mapping")
            path = (self.base_dir / relative).resolve()
            lab_file = str(path)
            try:
                base = self.read_lab(path)
            except ScenarioError as exc:
                if exc.source != lab_file or not exc.problem.startswith("cannot read"):
                    raise  # the lab file is there but malformed: its own error names it
                # A missing lab file is this file's mistake: name the key that points there.
                why = exc.problem.removeprefix("cannot read the file: ")
                raise f.fail(
                    "lab",
                    f"cannot read the lab file {lab_file}: {why}",
                    "the path is relative to this scenario file",
                ) from None
            validate_lab(base, str(path), "")
            prefix = "lab_overrides"
        elif raw is None or isinstance(raw, Mapping):
            base = {} if raw is None else raw
            prefix = "lab"
        else:
            raise f.fail(
                "lab", f"expected a lab file path or an inline lab mapping, got {show(raw)}"
            )
        base_map = f.mapping({} if base is None else base, "lab", LAB_SECTIONS)
        if overrides:
            f.mapping(overrides, "lab_overrides", LAB_SECTIONS)
        merged = deep_merge(base_map, overrides)
        config = _lab_config(merged, f.source, prefix)
        users = tuple(LabUser(u.name, u.email, u.password) for u in config.users)
        self.lab_tls = config.lab.tls.enabled
        self.client_cert_mode = config.sentry.tls.device.client_certificates
        spec = LabSpec(
            mapping=self.frozen(merged, "lab"),
            file=lab_file,
            overrides=self.frozen(overrides, "lab_overrides"),
        )
        return spec, users

    # --- devices ---

    def device(self, name: object, raw: object) -> None:
        f = self.fields
        path = join_path("devices", name)
        device_name = f.string(
            name, path, pattern=_NAME, what="a device name like alice-phone (letters, digits, -_.)"
        )
        obj = f.mapping(raw, path, DEVICE_KEYS, required=("user", "device_id"))
        spec: dict[str, Any] = {"name": device_name}
        spec["user"] = f.string(obj["user"], f"{path}.user", pattern=_USER, what="a user's login")
        spec["device_id"] = f.string(
            obj["device_id"],
            f"{path}.device_id",
            pattern=_DEVICE_ID,
            what="an EAS DeviceId of 1-32 letters or digits (MS-ASHTTP 2.2.1.1.1.2.3)",
        )
        for other in self.devices.values():
            if (strip_domain(other["user"]).lower(), other["device_id"].lower()) == (
                strip_domain(spec["user"]).lower(),
                spec["device_id"].lower(),
            ):
                raise f.fail(
                    f"{path}.device_id",
                    f"devices.{other['name']} already is {spec['user']}/{spec['device_id']}",
                )
        if "password" in obj:
            spec["password"] = f.string(obj["password"], f"{path}.password", empty=True)
        if "device_type" in obj:
            spec["device_type"] = f.string(
                obj["device_type"],
                f"{path}.device_type",
                pattern=_DEVICE_TYPE,
                what="a DeviceType like iPhone (1-32 characters, no '-' or spaces)",
            )
        version = ProtocolVersion.V16_1
        if "version" in obj:
            raw_version = obj["version"]
            # YAML reads an unquoted 14.0 as a number: take it as the text it was.
            if isinstance(raw_version, float):
                raw_version = f"{raw_version:.1f}"
            version = _VERSIONS[f.choice(raw_version, f"{path}.version", tuple(_VERSIONS))]
        spec["version"] = version
        if "query" in obj:
            form = QueryForm(
                f.choice(obj["query"], f"{path}.query", tuple(q.value for q in QueryForm))
            )
            if form is QueryForm.BASE64 and not version.allows_base64_query:
                raise f.fail(
                    f"{path}.query",
                    f"the base64 query form needs protocol 12.1 or later (MS-ASHTTP "
                    f"2.2.1.1.1.1), this device speaks {version.text}",
                )
            spec["query"] = form
        if "quirks" in obj:
            choices = tuple(q.value for q in Quirk)
            spec["quirks"] = frozenset(
                Quirk(f.choice(q, f"{path}.quirks[{i}]", choices))
                for i, q in enumerate(f.sequence(obj["quirks"], f"{path}.quirks"))
            )
        for text_key in ("model", "os", "user_agent"):
            if text_key in obj:
                value = f.string(obj[text_key], f"{path}.{text_key}", max_len=256)
                if not value.isprintable():
                    raise f.fail(
                        f"{path}.{text_key}", f"expected printable text, got {show(value)}"
                    )
                spec[text_key] = value
        if "gatekeeper" in obj:
            spec["gatekeeper"] = self.gatekeeper_number(obj["gatekeeper"], f"{path}.gatekeeper")
        if "client_certificate" in obj:
            certificate = self.client_certificate(
                obj["client_certificate"], f"{path}.client_certificate"
            )
            if certificate is not None:
                spec["client_certificate"] = certificate
        self.devices[device_name] = spec

    def client_certificate(self, value: object, path: str) -> ClientCertificate | None:
        """``none`` (or null): the phone holds no certificate; ``{user: U, device_id: D}``: the
        lab's CA issues one for U (and device D; without it, for any device of U). A
        certificate needs a lab whose gatekeeper asks for one."""
        f = self.fields
        if value is None or value == "none":
            return None
        if not isinstance(value, Mapping):
            raise f.fail(
                path,
                f"expected none or a mapping like {{user: alice, device_id: ALICEIPHONE01}}, "
                f"got {show(value)}",
            )
        obj = f.mapping(value, path, CLIENT_CERTIFICATE_KEYS, required=("user",))
        user = f.string(
            obj["user"],
            f"{path}.user",
            pattern=_USER,
            what="a user's login (the certificate's subject CN)",
            max_len=MAX_COMMON_NAME,
        )
        device_id = None
        if "device_id" in obj:
            device_id = f.string(
                obj["device_id"],
                f"{path}.device_id",
                pattern=_DEVICE_ID,
                what="an EAS DeviceId of 1-32 letters or digits (leave it out for a certificate "
                "valid for every device of the user)",
            )
        if not self.lab_tls:
            raise f.fail(
                path,
                "a client certificate needs a TLS lab, and this lab runs without TLS",
                "set lab.tls: {client_certificates: required} (or optional), e.g. under "
                "lab_overrides: {lab: {tls: {client_certificates: required}}}",
            )
        if self.client_cert_mode is ClientCertMode.OFF:
            raise f.fail(
                path,
                "the gatekeeper does not ask for client certificates (client_certificates is "
                "off), so the phone would never present this one",
                "set lab.tls: {client_certificates: required} (or optional)",
            )
        return ClientCertificate(user, device_id)

    def gatekeeper_number(self, value: object, path: str) -> int:
        """1..``gatekeepers`` (the scenario's top-level ``gatekeepers:``, default 1)."""
        number = self.fields.integer(value, path, 1, MAX_GATEKEEPERS)
        if number > self.gatekeepers:
            raise self.fields.fail(
                path,
                f"gatekeeper {number} does not exist: the scenario runs {self.gatekeepers}",
                f"set gatekeepers: {number} at the top of the file",
            )
        return number

    def finish_devices(self, users: Iterable[LabUser]) -> dict[str, DeviceSpec]:
        by_name: dict[str, LabUser] = {}
        for user in users:
            by_name.setdefault(user.name.lower(), user)
            if user.email:
                by_name.setdefault(user.email.lower(), user)
        out: dict[str, DeviceSpec] = {}
        for name, spec in self.devices.items():
            ident = strip_domain(spec["user"]).lower()
            found = by_name.get(ident)
            if "password" not in spec:
                if found is None:
                    known = ", ".join(sorted({u.name for u in by_name.values()})) or "none"
                    raise self.fields.fail(
                        f"devices.{name}.user",
                        f"no user {show(spec['user'])} in the lab (users: {known})",
                        "add the user to the lab's users:, add it with an add_user step, or "
                        "give the device a password:",
                    )
                spec = {**spec, "password": found.password}
            out[name] = DeviceSpec(**spec)
        return out

    def device_name(self, value: object, path: str) -> str:
        f = self.fields
        if not isinstance(value, str):
            raise f.fail(path, f"expected the name of a phone from devices:, got {show(value)}")
        if value not in self.devices:
            known = ", ".join(self.devices) or "none declared"
            hint = suggest(value, self.devices)
            raise f.fail(
                path,
                f"unknown device {show(value)} (devices: {known})",
                hint or "declare it under devices:",
            )
        return value

    def record(
        self, value: object, path: str, extra: tuple[str, ...]
    ) -> tuple[RecordRef, Mapping[str, Any]]:
        """A record named by a phone (``alice-phone`` or ``device: alice-phone``) or by
        ``user`` + ``device_id``; returns it and the mapping (empty for the shorthand)."""
        f = self.fields
        if isinstance(value, str):
            name = self.device_name(value, path)
            return self.ref(name), {}
        if not isinstance(value, Mapping):
            raise f.fail(
                path,
                "expected the name of a phone from devices:, or a mapping with device: (or "
                f"user: and device_id:), got {show(value)}",
            )
        obj = f.mapping(value, path, ("device", "user", "device_id", *extra))
        if "device" in obj:
            for key in ("user", "device_id"):
                if key in obj:
                    raise f.fail(
                        f"{path}.{key}", "give either device: or user: with device_id:, not both"
                    )
            return self.ref(self.device_name(obj["device"], f"{path}.device")), obj
        if "user" not in obj or "device_id" not in obj:
            missing = "user" if "user" not in obj else "device_id"
            raise f.fail(
                f"{path}.{missing}",
                "missing: name the record with device: (a phone from devices:) or with "
                "user: and device_id:",
            )
        user = f.string(obj["user"], f"{path}.user", pattern=_USER, what="a user's login")
        device_id = f.string(
            obj["device_id"], f"{path}.device_id", pattern=_EAS_DEVICE_ID, what="an EAS DeviceId"
        )
        return RecordRef(user, device_id), obj

    def frozen(self, value: object, path: str) -> Any:
        """``freeze`` with its depth limit reported against ``path``."""
        try:
            return freeze(value)
        except ValueError as exc:
            raise self.fields.fail(path, str(exc)) from None

    def ref(self, name: str) -> RecordRef:
        spec = self.devices[name]
        return RecordRef(spec["user"], spec["device_id"], name)

    # --- steps ---

    def step(self, index: int, raw: object) -> Step:
        f = self.fields
        path = f"steps[{index}]"
        if not isinstance(raw, Mapping) or len(raw) != 1:
            if isinstance(raw, Mapping) and len(raw) > 1:
                kinds = ", ".join(str(k) for k in raw)
                raise f.fail(
                    path,
                    f"expected one step kind per list item, got {kinds}",
                    "start each step with its own '- ' (check the indentation)",
                )
            raise f.fail(
                path, f"expected a one-key mapping like '- connect: alice-phone', got {show(raw)}"
            )
        ((kind, value),) = raw.items()
        parser = _STEP_KINDS.get(kind) if isinstance(kind, str) else None
        if parser is None:
            hint = suggest(kind, _STEP_KINDS)
            known = "step kinds: " + ", ".join(_STEP_KINDS)
            raise f.fail(
                path, f"unknown step kind {show(kind)}", f"{hint} {known}" if hint else known
            )
        return parser(self, index, f"{path}.{kind}", kind, value)

    def say(self, index: int, path: str, kind: str, value: object) -> Step:
        text = self.fields.string(value, path, what="the text to narrate")
        return Say(index=index, text=text)

    def advance(self, index: int, path: str, kind: str, value: object) -> Step:
        seconds = self.fields.duration(value, path)
        return Advance(index=index, seconds=seconds, text=str(value))

    def device_step(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        action = DeviceAction(kind)
        extra: tuple[str, ...] = {
            DeviceAction.SYNC: ("folders",),
            DeviceAction.PING: ("heartbeat", "folders"),
            DeviceAction.SEND_MAIL: ("to", "subject", "body"),
        }.get(action, ())
        if not isinstance(value, str | Mapping):
            raise f.fail(
                path,
                f"expected the name of a phone from devices: or a mapping with device:, "
                f"got {show(value)}",
            )
        if isinstance(value, str):
            if action is DeviceAction.SEND_MAIL:
                raise f.fail(path, "expected a mapping with device:, to: and subject:")
            return DeviceStep(index=index, action=action, device=self.device_name(value, path))
        obj = f.mapping(value, path, ("device", *extra), required=("device",))
        options: dict[str, Any] = {}
        if "folders" in obj:
            options["folders"] = f.strings(obj["folders"], f"{path}.folders")
        if "heartbeat" in obj:
            raw = obj["heartbeat"]
            where = f"{path}.heartbeat"
            if isinstance(raw, str):
                seconds = f.duration(raw, where)
                if seconds != int(seconds):
                    raise f.fail(where, f"expected whole seconds, got {show(raw)}")
                options["heartbeat_s"] = f.integer(int(seconds), where, 1, 3540)
            else:
                options["heartbeat_s"] = f.integer(raw, where, 1, 3540)
        if action is DeviceAction.SEND_MAIL:
            if "to" not in obj:
                raise f.fail(f"{path}.to", "missing (the recipient, e.g. bob@example.com)")
            options["to"] = f.string(obj["to"], f"{path}.to", max_len=256)
            options["subject"] = f.string(
                obj.get("subject", "sentry-sim test"), f"{path}.subject", max_len=256
            )
            options["body"] = f.string(obj.get("body", ""), f"{path}.body", empty=True)
        return DeviceStep(
            index=index,
            action=action,
            device=self.device_name(obj["device"], f"{path}.device"),
            **options,
        )

    def posture(
        self, obj: Mapping[str, Any], path: str, *, need_version: bool = False
    ) -> PostureChange:
        f = self.fields
        reader = Reader(f.source)
        out: dict[str, Any] = {}
        try:
            if "platform" in obj:
                out["platform"] = f.string(
                    obj["platform"], f"{path}.platform", pattern=_USER, what="a platform like ios"
                ).lower()
            if "os_version" in obj:
                out["os_version"] = reader.version(obj["os_version"], f"{path}.os_version")
            if "model" in obj:
                out["model"] = f.string(obj["model"], f"{path}.model", empty=True, max_len=256)
            for flag in ("compromised", "data_protection"):
                if flag in obj:
                    out[flag] = f.boolean(obj[flag], f"{path}.{flag}")
            if "apps" in obj:
                out["apps"] = frozenset(a.lower() for a in f.strings(obj["apps"], f"{path}.apps"))
        except UemConfigError as exc:
            raise ScenarioError(f.source, exc.path, exc.problem, hint=exc.hint) from None
        if need_version and "os_version" not in out:
            raise f.fail(f"{path}.os_version", 'missing (e.g. os_version: "17.1")')
        return PostureChange(**out)

    def checkin(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        if isinstance(value, str):
            return CheckIn(
                index=index, device=self.device_name(value, path), posture=PostureChange()
            )
        obj = f.mapping(
            value, path, ("device", *POSTURE_KEYS, "applied_policy_version"), required=("device",)
        )
        applied = None
        if "applied_policy_version" in obj:
            applied = f.integer(
                obj["applied_policy_version"], f"{path}.applied_policy_version", 0, 1_000_000
            )
        return CheckIn(
            index=index,
            device=self.device_name(obj["device"], f"{path}.device"),
            posture=self.posture(obj, path),
            applied_policy_version=applied,
        )

    def record_action(self, index: int, path: str, kind: str, value: object) -> Step:
        ref, obj = self.record(value, path, ("note",))
        note = ""
        if "note" in obj:
            note = self.fields.string(obj["note"], f"{path}.note", empty=True, max_len=1024)
        return RecordAction(index=index, action=AdminAction(kind), record=ref, note=note)

    def check_in_days(self, obj: Mapping[str, Any], path: str) -> float | None:
        if "last_check_in_days_ago" not in obj:
            return None
        return self.fields.number(
            obj["last_check_in_days_ago"], f"{path}.last_check_in_days_ago", 0, 36_500
        )

    def set_posture(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        if not isinstance(value, Mapping):
            raise f.fail(path, "expected a mapping like {device: alice-phone, compromised: true}")
        ref, obj = self.record(value, path, (*POSTURE_KEYS, "last_check_in_days_ago"))
        posture = self.posture(obj, path)
        days = self.check_in_days(obj, path)
        if not posture.to_json() and days is None:
            raise f.fail(
                path,
                "nothing to change",
                f"give one of: {', '.join((*POSTURE_KEYS, 'last_check_in_days_ago'))}",
            )
        return SetPosture(index=index, record=ref, posture=posture, last_check_in_days_ago=days)

    def register(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        if not isinstance(value, Mapping):
            raise f.fail(path, 'expected a mapping like {device: alice-phone, os_version: "17.1"}')
        ref, obj = self.record(value, path, (*POSTURE_KEYS, "last_check_in_days_ago"))
        posture = self.posture(obj, path, need_version=True)
        days = self.check_in_days(obj, path)
        return Register(index=index, record=ref, posture=posture, last_check_in_days_ago=days)

    def unregister(self, index: int, path: str, kind: str, value: object) -> Step:
        ref, _ = self.record(value, path, ())
        return Unregister(index=index, record=ref)

    def add_user(self, index: int, path: str, kind: str, value: object) -> Step:
        try:
            user = parse_user(Reader(self.fields.source), value, path)
        except UemConfigError as exc:
            raise ScenarioError(self.fields.source, exc.path, exc.problem, hint=exc.hint) from None
        self.added_users.append(LabUser(user.name, user.email, user.password))
        return AddUser(index=index, user=user)

    def policy(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        obj = f.mapping(value, path, POLICY_KEYS)
        if not obj:
            raise f.fail(path, "nothing to change", f"give one of: {', '.join(POLICY_KEYS)}")
        try:
            parse_policy(Reader(f.source), obj, path, UemPolicy())
        except UemConfigError as exc:
            raise ScenarioError(f.source, exc.path, exc.problem, hint=exc.hint) from None
        return ChangePolicy(index=index, changes=self.frozen(obj, path))

    def actor(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        if kind == "gatekeeper":
            number = 1
            if isinstance(value, Mapping):
                obj = f.mapping(value, path, ("action", "number"), required=("action",))
                if "number" in obj:
                    number = self.gatekeeper_number(obj["number"], f"{path}.number")
                value, path = obj["action"], f"{path}.action"
            action = f.choice(value, path, GATEKEEPER_ACTIONS)
            if action == "resync":
                return Resync(index=index, gatekeeper=number)
            return Fault(index=index, actor="push", up=action == "push_up", gatekeeper=number)
        if kind == "uem":
            verb = f.choice(value, path, ("down", "up", "compliance_check"))
            if verb == "compliance_check":
                return ComplianceCheck(index=index)
        else:
            verb = f.choice(value, path, ("down", "up"))
        return Fault(index=index, actor=kind, up=verb == "up")

    def faults(self, index: int, path: str, kind: str, value: object) -> Step:
        """``uem_faults:`` / ``exchange_faults:``: the plan is checked here with the server's
        own reader, so a bad plan stops the file from loading (errors name the plan's key under
        ``steps[i].<kind>``) instead of failing half-way through a run."""
        actor = kind.removesuffix("_faults")
        f = self.fields
        if not isinstance(value, Mapping):
            raise f.fail(
                path,
                f"expected a fault plan mapping, got {show(value)}",
                "e.g. {latency: 0.5} or {error_rate: {rate: 0.5, status: 503}}; "
                f"to clear, use '- clear_faults: {actor}' (see docs/faults.md)",
            )
        plan = self.frozen(value, path)
        try:
            if actor == "uem":
                FaultControl().parse(thaw(plan), f.source)
            else:
                ExchangeFaults().parse(thaw(plan), f.source)
        except FaultError as exc:
            where = join_path(path, exc.path) if exc.path else path
            raise f.fail(where, exc.problem, "see docs/faults.md for the plan format") from None
        return SetFaults(index=index, actor=actor, plan=plan)

    def clear_faults(self, index: int, path: str, kind: str, value: object) -> Step:
        target = self.fields.choice(value, path, CLEAR_FAULTS_TARGETS)
        actors = FAULT_ACTORS if target == "all" else (target,)
        return ClearFaults(index=index, actors=actors)

    # --- expectations ---

    def expect(self, index: int, path: str, kind: str, value: object) -> Step:
        f = self.fields
        obj = f.mapping(value, path, ("device", "gatekeeper", "uem", "events", "counters"))
        if not obj:
            raise f.fail(
                path, "nothing to check", "give device:, gatekeeper:, uem:, events: or counters:"
            )
        devices = tuple(
            self.expect_device(p, v)
            for p, v in f.one_or_many(obj.get("device") or [], f"{path}.device")
        )
        gatekeeper = tuple(
            self.expect_gatekeeper(p, v)
            for p, v in f.one_or_many(obj.get("gatekeeper") or [], f"{path}.gatekeeper")
        )
        uem = tuple(
            self.expect_uem(p, v) for p, v in f.one_or_many(obj.get("uem") or [], f"{path}.uem")
        )
        events: tuple[EventExpectation, ...] = ()
        since = Window.START
        if "events" in obj:
            events, since = self.expect_events(obj["events"], f"{path}.events")
        counters: tuple[CounterExpectation, ...] = ()
        if "counters" in obj:
            counters = self.expect_counters(obj["counters"], f"{path}.counters")
        return Expect(
            index=index,
            devices=devices,
            gatekeeper=gatekeeper,
            uem=uem,
            events=events,
            events_since=since,
            counters=counters,
        )

    def expect_device(self, path: str, value: object) -> DeviceExpectation:
        f = self.fields
        obj = f.mapping(
            value, path, ("device", "saw", "http", "eas_status", "state"), required=("device",)
        )
        if len(obj) < 2:
            raise f.fail(path, "nothing to check", "give saw:, http:, eas_status: or state:")
        return DeviceExpectation(
            path=path,
            device=self.device_name(obj["device"], f"{path}.device"),
            saw=None
            if "saw" not in obj
            else f.choice(obj["saw"], f"{path}.saw", DEVICE_SAW, fold_case=True),
            http=None if "http" not in obj else f.integer(obj["http"], f"{path}.http", 100, 599),
            eas_status=None
            if "eas_status" not in obj
            else f.integer(obj["eas_status"], f"{path}.eas_status", 1, 999),
            state=None
            if "state" not in obj
            else f.choice(obj["state"], f"{path}.state", DEVICE_STATES, fold_case=True),
        )

    def reasons(self, value: object, path: str) -> int:
        f = self.fields
        items = [value] if isinstance(value, str) else f.sequence(value, path)
        mask = 0
        for i, item in enumerate(items):
            where = path if isinstance(value, str) else f"{path}[{i}]"
            name = f.choice(item, where, REASON_NAMES, fold_case=True)
            mask |= Reason[name].value
        return mask

    def record_checks(
        self, path: str, value: object, checks: tuple[str, ...], extra: tuple[str, ...] = ()
    ) -> tuple[RecordRef, Mapping[str, Any]]:
        f = self.fields
        if not isinstance(value, Mapping):
            raise f.fail(path, f"expected a mapping with device: and one of {', '.join(checks)}")
        ref, obj = self.record(value, path, (*checks, *extra))
        if not any(k in obj for k in checks):
            raise f.fail(path, "nothing to check", f"give one of: {', '.join(checks)}")
        return ref, obj

    def expect_gatekeeper(self, path: str, value: object) -> GatekeeperExpectation:
        f = self.fields
        checks = ("state", "reasons", "reasons_include", "fallback", "policy_version")
        ref, obj = self.record_checks(path, value, checks, ("gatekeeper",))
        return GatekeeperExpectation(
            path=path,
            record=ref,
            gatekeeper=1
            if "gatekeeper" not in obj
            else self.gatekeeper_number(obj["gatekeeper"], f"{path}.gatekeeper"),
            state=None
            if "state" not in obj
            else f.choice(obj["state"], f"{path}.state", GATEKEEPER_STATES, fold_case=True),
            reasons=None
            if "reasons" not in obj
            else self.reasons(obj["reasons"], f"{path}.reasons"),
            reasons_include=0
            if "reasons_include" not in obj
            else self.reasons(obj["reasons_include"], f"{path}.reasons_include"),
            fallback=None
            if "fallback" not in obj
            else f.boolean(obj["fallback"], f"{path}.fallback"),
            policy_version=None
            if "policy_version" not in obj
            else f.integer(obj["policy_version"], f"{path}.policy_version", 0, 0xFFFF),
        )

    def expect_uem(self, path: str, value: object) -> UemExpectation:
        f = self.fields
        checks = ("group", "state", "reasons", "reasons_include", "registered")
        ref, obj = self.record_checks(path, value, checks)
        return UemExpectation(
            path=path,
            record=ref,
            group=None
            if "group" not in obj
            else f.choice(obj["group"], f"{path}.group", UEM_GROUPS, fold_case=True),
            state=None
            if "state" not in obj
            else f.choice(obj["state"], f"{path}.state", UEM_STATES, fold_case=True),
            reasons=None
            if "reasons" not in obj
            else self.reasons(obj["reasons"], f"{path}.reasons"),
            reasons_include=0
            if "reasons_include" not in obj
            else self.reasons(obj["reasons_include"], f"{path}.reasons_include"),
            registered=None
            if "registered" not in obj
            else f.boolean(obj["registered"], f"{path}.registered"),
        )

    def expect_events(
        self, value: object, path: str
    ) -> tuple[tuple[EventExpectation, ...], Window]:
        f = self.fields
        obj = f.mapping(value, path, ("happened", "not_happened", "since"))
        since = Window.START
        if "since" in obj:
            since = Window(f.choice(obj["since"], f"{path}.since", tuple(w.value for w in Window)))
        out: list[EventExpectation] = []
        for group in ("happened", "not_happened"):
            if group in obj:
                where = f"{path}.{group}"
                for i, item in enumerate(f.sequence(obj[group], where)):
                    out.append(self.event(item, f"{where}[{i}]", happened=group == "happened"))
        if not out:
            raise f.fail(path, "nothing to check", "give happened: or not_happened: lists")
        return tuple(out), since

    def event(self, value: object, path: str, *, happened: bool) -> EventExpectation:
        f = self.fields
        counts = ("count", "at_least", "at_most") if happened else ()
        if isinstance(value, str):
            obj: Mapping[str, Any] = {"event": value}
            name_path = path
        else:
            obj = f.mapping(
                value,
                path,
                ("event", "device", "user", "device_id", "where", *counts),
                required=("event",),
            )
            name_path = f"{path}.event"
        raw_name = obj["event"]
        found = event_type(raw_name) if isinstance(raw_name, str) else None
        if found is None:
            names = sorted(EVENT_TYPES)
            kinds = [t.kind for t in EVENT_TYPES.values()]
            hint = suggest(raw_name, [*names, *kinds])
            raise f.fail(
                name_path,
                f"unknown event type {show(raw_name)}",
                (hint + " " if hint else "") + "event types: " + ", ".join(names),
            )
        record = None
        if any(k in obj for k in ("device", "user", "device_id")):
            if not ({"record", "device_id"} & found.fields):
                raise f.fail(path, f"{found.name} events are not about one device: drop device:")
            record, _ = self.record(
                {k: obj[k] for k in ("device", "user", "device_id") if k in obj}, path, ()
            )
        where: dict[str, Any] = {}
        if "where" in obj:
            for key, wanted in f.mapping(obj["where"], f"{path}.where").items():
                key_path = f"{path}.where.{key}"
                if key not in found.fields:
                    hint = suggest(key, found.fields)
                    known = f"{found.name} has: {', '.join(sorted(found.fields))}"
                    raise f.fail(key_path, "unknown field", f"{hint} {known}" if hint else known)
                if wanted is not None and not isinstance(wanted, str | int | float | bool):
                    raise f.fail(
                        key_path, f"expected a text, number, boolean or null, got {show(wanted)}"
                    )
                where[key] = wanted
        count = at_least = at_most = None
        if "count" in obj:
            if "at_least" in obj or "at_most" in obj:
                raise f.fail(f"{path}.count", "give count: or at_least:/at_most:, not both")
            count = f.integer(obj["count"], f"{path}.count", 1, 1_000_000)
        if "at_least" in obj:
            at_least = f.integer(obj["at_least"], f"{path}.at_least", 1, 1_000_000)
        if "at_most" in obj:
            at_most = f.integer(obj["at_most"], f"{path}.at_most", 1, 1_000_000)
            if at_least is not None and at_most < at_least:
                raise f.fail(
                    f"{path}.at_most", f"expected at least at_least ({at_least}), got {at_most}"
                )
        if happened and count is None and at_least is None:
            at_least = 1
        if not happened:
            count = 0
        return EventExpectation(
            path=path,
            event=found,
            record=record,
            where=freeze(where),
            count=count,
            at_least=at_least,
            at_most=at_most,
        )

    def expect_counters(self, value: object, path: str) -> tuple[CounterExpectation, ...]:
        f = self.fields
        obj = f.mapping(value, path, tuple(COUNTERS))
        if not obj:
            raise f.fail(path, "nothing to check", f"counters: {', '.join(COUNTERS)}")
        out: list[CounterExpectation] = []
        for name, wanted in obj.items():
            where = f"{path}.{name}"
            if isinstance(wanted, Mapping):
                bounds = f.mapping(wanted, where, ("at_least", "at_most"))
                if not bounds:
                    raise f.fail(where, "expected at_least: and/or at_most:")
                low = None
                high = None
                if "at_least" in bounds:
                    low = f.integer(bounds["at_least"], f"{where}.at_least", 0, 10**9)
                if "at_most" in bounds:
                    high = f.integer(bounds["at_most"], f"{where}.at_most", 0, 10**9)
                if low is not None and high is not None and high < low:
                    raise f.fail(
                        f"{where}.at_most", f"expected at least at_least ({low}), got {high}"
                    )
                out.append(CounterExpectation(path=where, name=name, at_least=low, at_most=high))
            else:
                equals = f.integer(wanted, where, 0, 10**9)
                out.append(CounterExpectation(path=where, name=name, equals=equals))
        return tuple(out)


_StepParser = Callable[[_Parser, int, str, str, object], Step]

#: Step kinds and their parsers, in the order the docs list them.
_STEP_KINDS: Final[Mapping[str, _StepParser]] = {
    "say": _Parser.say,
    "note": _Parser.say,
    "advance": _Parser.advance,
    **{a.value: _Parser.device_step for a in DeviceAction},
    "checkin": _Parser.checkin,
    **{a.value: _Parser.record_action for a in AdminAction},
    "posture": _Parser.set_posture,
    "register": _Parser.register,
    "unregister": _Parser.unregister,
    "add_user": _Parser.add_user,
    "policy": _Parser.policy,
    "uem": _Parser.actor,
    "exchange": _Parser.actor,
    "gatekeeper": _Parser.actor,
    "uem_faults": _Parser.faults,
    "exchange_faults": _Parser.faults,
    "clear_faults": _Parser.clear_faults,
    "expect": _Parser.expect,
}

#: Every step kind a scenario may use.
STEP_KINDS: Final = tuple(_STEP_KINDS)

__all__ = [
    "LAB_SECTIONS",
    "STEP_KINDS",
    "LabSpec",
    "Scenario",
    "ScenarioError",
    "deep_merge",
    "load_scenario",
    "parse_scenario",
    "read_yaml_file",
    "thaw",
    "validate_lab",
]
