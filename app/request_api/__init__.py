"""The request API: ``/api/v1/requests`` for scripts and runbooks, authenticated by request-client tokens.

It can ask for access, read and cancel a client's own requests; it has no route that approves. Served by the same
HTTP listener as ``/slack/events`` (``accessbot serve``, gunicorn). Beside ``slack`` in the layers: it imports the
access domain, never Slack.
"""
