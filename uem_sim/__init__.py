"""uem_sim: the mock UEM (MobileIron Core's role) - registry, policy engine, gatekeeper API.

Modules: ``contract`` (the gatekeeper-facing messages and paths, pure; the only module
``sentry_sim`` may import), ``reasons``, ``model``, ``policy`` (pure ``decide()``), ``config``,
``registry`` (state transitions, pure), ``store`` (SQLite), ``events``, ``push``, ``service``,
``handlers`` and ``app`` (``make_app``).

This file imports nothing on purpose: importing ``uem_sim.contract`` must not pull in aiohttp.
"""
