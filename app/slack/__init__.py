"""The Slack layer: translates Slack payloads into domain calls and domain state into Block Kit."""
