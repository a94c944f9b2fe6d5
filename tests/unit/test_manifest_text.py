"""``manifest.yml``'s instructions match the file: the number of places to change for HTTP mode that its header
names is the number of lines marked "HTTP mode", and each is a URL of the Slack endpoint."""

from __future__ import annotations

import re
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def test_the_header_counts_the_http_mode_places_right() -> None:
    text = MANIFEST.read_text()
    said = re.search(r"in the (\w+) places marked \"HTTP mode\"", text)
    assert said, "the header must say how many places change for HTTP mode"
    marked = [line for line in text.splitlines() if re.search(r"#\s*HTTP mode", line) and not line.startswith("#")]
    assert WORDS[said.group(1)] == len(marked)
    assert all("https://accessbot.example.com/slack/events" in line for line in marked)
