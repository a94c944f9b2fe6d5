"""Just-in-time access: profiles, requests, votes and grants (no Slack here)."""
