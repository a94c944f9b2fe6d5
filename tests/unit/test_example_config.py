"""``accessbot.example.yml`` is a valid config that shows every key of the config model (a new setting without
an example line fails here)."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.config.model import Config, TailnetConfig, load_config
from app.config.profiles import Profile

EXAMPLE = Path(__file__).resolve().parents[2] / "accessbot.example.yml"


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.profiles and config.profiles[0].id == "prod"
    assert config.policy_file is not None


def test_the_example_shows_every_key() -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert set(data) == set(Config.model_fields)
    assert set(data["tailnet"]) == set(TailnetConfig.model_fields)
    assert set(data["profiles"][0]) == set(Profile.model_fields)
