"""Load runs against the gatekeeper: profiles, an open-model generator, reports, Locust.

- ``profiles``: YAML profiles validated into ``Profile`` (``load_profile``, ``lab_config``).
- ``generator``: ``run_profile(profile, target, lab=...) -> RunResult`` (asyncio, aiohttp).
- ``histogram``: the HDR-style ``Histogram``; ``results``: ``Recorder``, ``RunResult``, validity.
- ``thresholds``: ``p99 < 5ms``-style rules and decision expectations; ``report`` and
  ``html_report``: console, JSON and self-contained HTML; ``target``: the loopback-only rule.
- ``locustfile``: a Locust user built on ``device_sim`` for runs that outgrow one machine.

``sentry-sim load PROFILE`` (``scenarios/cli_load.py``) is the command.
"""
