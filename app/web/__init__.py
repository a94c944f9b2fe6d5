"""app.web."""
