"""``accessbot demo``: the access flow played offline through the real app (``flow.py``), against a Slack Web API
stand-in (``slack_standin.py``) on 127.0.0.1 and the built-in tailnet."""

from app.bootstrap.demo.flow import DemoFailed, run_demo

__all__ = ["DemoFailed", "run_demo"]
