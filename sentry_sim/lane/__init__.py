"""The gatekeeper's fast lane: an httptools ``asyncio.Protocol`` front for the hot path.

``start_lane`` puts it on the device port; ``server`` explains the design, ``hot_path`` the
rule that decides what it forwards itself, ``request_line`` the cheap identity read,
``pool`` the upstream connections and ``wire`` the HTTP/1.1 framing. docs/performance.md
has the measurements.
"""

from __future__ import annotations

from sentry_sim.lane.server import Lane, start_lane

__all__ = ["Lane", "start_lane"]
