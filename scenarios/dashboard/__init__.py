"""The trainer's live view of a lab: a web page over the lab's event buses and admin calls.

``model`` folds events into per-device ladders and an event log (pure), ``export`` turns a
ladder into Mermaid or Jaeger trace JSON (pure), ``app`` serves the page, the live stream and
the controls (``make_dashboard_app(lab)``). The page itself is ``static/``.
"""
