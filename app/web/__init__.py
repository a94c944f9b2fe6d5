"""What every HTTP listener shares: the waitress server with its limits, and the operational endpoints
(``/healthz``, ``/metrics``) with request counting."""
