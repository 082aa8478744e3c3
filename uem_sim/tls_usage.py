"""What each outgoing TLS endpoint negotiated, or why it failed: the UEM's usage view.

Responsibility: per endpoint (``host:port``) the last negotiated protocol and cipher suite,
when, and how many calls used it; for a failed handshake the error and which *disabled*
suite(s) the endpoint would have needed (Core marks those with an asterisk in its outgoing
SSL configuration) or which retired protocol it speaks. The table is cleared once a week on
the injected clock, as Core clears its usage data weekly. Must not: do I/O or read a clock
(``now`` is passed in); ``uem_sim.outgoing_client`` feeds it.

Theory of operation: a period starts when the table is made and lasts ``period_s`` (7 days);
every method first calls ``roll(now)``, which empties the table when the period is over and
starts the period in which ``now`` falls. No timer is needed, so advancing a ``ManualClock``
by 7 days clears the view the next time anyone looks. A success clears the endpoint's
diagnosis (it works now); its failure count and last error stay, as history, until the
weekly clear.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from uem_sim.outgoing_tls import OutgoingTlsSettings, find_suite, suite_for_openssl

#: Usage is cleared every week (seconds).
WEEK_S: Final = 7 * 24 * 3600.0
#: Most endpoints tracked; beyond it the least recently used is forgotten.
MAX_ENDPOINTS: Final = 1000
#: The marker Core puts beside a disabled suite some endpoint needs.
MARKER: Final = "*"


@attrs.frozen(kw_only=True)
class EndpointUsage:
    """One endpoint's outgoing TLS, as last seen this week."""

    endpoint: str
    #: The SNI sent (None: none, the endpoint was an IP literal).
    sni: str | None = None
    protocol: str | None = None
    #: IANA name when the suite is in the catalogue, else OpenSSL's name.
    cipher: str | None = None
    openssl_cipher: str | None = None
    calls: int = 0
    last_used_at: float | None = None
    failures: int = 0
    last_error: str | None = None
    last_failure_at: float | None = None
    #: Disabled suites (IANA names) a probe found the endpoint would accept.
    needs_disabled: tuple[str, ...] = ()
    #: A retired protocol the endpoint speaks instead of TLS 1.2 (``TLSv1.1``), if probed so.
    speaks_only: str | None = None

    @property
    def last_seen_at(self) -> float:
        return max(self.last_used_at or -math.inf, self.last_failure_at or -math.inf)

    @property
    def failing(self) -> bool:
        """True when the last thing that happened to this endpoint was a failure."""
        return self.last_failure_at is not None and (
            self.last_used_at is None or self.last_failure_at >= self.last_used_at
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "sni": self.sni,
            "protocol": self.protocol,
            "cipher": self.cipher,
            "openssl_cipher": self.openssl_cipher,
            "calls": self.calls,
            "last_used_at": self.last_used_at,
            "failures": self.failures,
            "failing": self.failing,
            "last_error": self.last_error,
            "last_failure_at": self.last_failure_at,
            "needs_disabled": list(self.needs_disabled),
            "speaks_only": self.speaks_only,
        }


@attrs.define(eq=False)
class TlsUsage:
    """The usage table; every method takes ``now`` (module docstring)."""

    period_started_at: float
    period_s: float = WEEK_S
    #: How many times the weekly clear emptied the table.
    clears: int = 0
    _entries: dict[str, EndpointUsage] = attrs.field(factory=dict, alias="entries")

    def roll(self, now: float) -> bool:
        """Clear the table if its week is over; True when it was cleared."""
        if now < self.period_started_at + self.period_s:
            return False
        elapsed = math.floor((now - self.period_started_at) / self.period_s)
        self.period_started_at += elapsed * self.period_s
        self._entries.clear()
        self.clears += 1
        return True

    def _get(self, endpoint: str, now: float) -> EndpointUsage:
        self.roll(now)
        entry = self._entries.pop(endpoint, None)
        if entry is None:
            entry = EndpointUsage(endpoint=endpoint)
            if len(self._entries) >= MAX_ENDPOINTS:
                oldest = min(self._entries.values(), key=lambda e: e.last_seen_at)
                del self._entries[oldest.endpoint]
        return entry

    def succeeded(
        self, endpoint: str, *, sni: str | None, protocol: str, openssl_cipher: str, now: float
    ) -> EndpointUsage:
        """A call to ``endpoint`` went over ``protocol`` with ``openssl_cipher``."""
        entry = self._get(endpoint, now)
        suite = suite_for_openssl(openssl_cipher)
        entry = attrs.evolve(
            entry,
            sni=sni,
            protocol=protocol,
            cipher=suite.iana if suite is not None else openssl_cipher,
            openssl_cipher=openssl_cipher,
            calls=entry.calls + 1,
            last_used_at=now,
            needs_disabled=(),
            speaks_only=None,
        )
        self._entries[endpoint] = entry
        return entry

    def failed(
        self,
        endpoint: str,
        *,
        sni: str | None,
        error: str,
        now: float,
        needs_disabled: tuple[str, ...] | None = None,
        speaks_only: str | None = None,
    ) -> EndpointUsage:
        """A handshake with ``endpoint`` failed. ``needs_disabled``/``speaks_only`` are the
        probe's findings (``needs_disabled=None``: not probed this time, keep the last)."""
        entry = self._get(endpoint, now)
        fields: dict[str, Any] = {
            "sni": sni,
            "failures": entry.failures + 1,
            "last_error": error,
            "last_failure_at": now,
        }
        if needs_disabled is not None:
            fields["needs_disabled"] = tuple(
                s.iana for name in needs_disabled if (s := find_suite(name)) is not None
            )
            fields["speaks_only"] = speaks_only
        entry = attrs.evolve(entry, **fields)
        self._entries[endpoint] = entry
        return entry

    def entries(self, now: float) -> list[EndpointUsage]:
        """This week's endpoints, sorted by name."""
        self.roll(now)
        return sorted(self._entries.values(), key=lambda e: e.endpoint)

    def view(self, settings: OutgoingTlsSettings, now: float) -> dict[str, Any]:
        """The JSON of ``GET /api/v1/outgoing-tls/usage`` (docs/admin-api.md)."""
        entries = self.entries(now)
        suites: list[dict[str, Any]] = []
        for status, listed in (("selected", settings.selected), ("disabled", settings.disabled)):
            for suite in listed:
                used_by = [e.endpoint for e in entries if e.cipher == suite.iana]
                needed_by = [
                    e.endpoint for e in entries if e.failing and suite.iana in e.needs_disabled
                ]
                marked = status == "disabled" and bool(needed_by)
                suites.append(
                    {
                        "name": suite.iana,
                        "openssl_name": suite.openssl,
                        "status": status,
                        "marker": MARKER if marked else "",
                        "used_by": used_by,
                        "needed_by": needed_by,
                    }
                )
        return {
            "period_started_at": self.period_started_at,
            "clears_at": self.period_started_at + self.period_s,
            "clears": self.clears,
            "endpoints": [e.to_dict() for e in entries],
            "suites": suites,
            "marked": [s["name"] for s in suites if s["marker"]],
        }
