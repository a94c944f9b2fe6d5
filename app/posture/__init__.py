"""Posture rules: the policy file's postures, a parser and evaluator of their conditions, lint and checks.

Pure domain code (no Slack). Tailscale's own evaluator is not public; this one follows the documented
semantics (Tailscale's device posture documentation, tailscale.com/kb/1288/device-posture).
"""
