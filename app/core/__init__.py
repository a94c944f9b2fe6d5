"""Plumbing every layer may use and that knows nothing of accessbot's domain: the clock, time formats, logging,
encryption, trusted proxies, the metrics registry and its hooks, the retrying HTTP client, reloading files."""
