"""On-call lookups (PagerDuty, Opsgenie): is this person on call now, for which schedule, until when."""
