"""Block Kit views: pure functions from domain data to Slack JSON."""
