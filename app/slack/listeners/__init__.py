"""Bolt listeners, grouped by kind; each module exposes ``register(app, ctx)``."""
