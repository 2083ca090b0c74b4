"""The failure_events key: Vrooli's set by default, a list in TOML, words in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemd.collector import config
from telemd.collector.events.model import DEFAULT_FAILURE_EVENTS
from telemd.errors import ConfigError


def test_the_default_is_vrooli_s_twelve() -> None:
    loaded = config.load({}, environ={})
    assert loaded.failure_events == frozenset(DEFAULT_FAILURE_EVENTS)
    assert {"migration_failed", "readiness_timeout"} <= loaded.failure_events


def test_from_a_file_and_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_text('failure_events = ["crash", "oom"]\n')
    assert config.load({}, str(path), {}).failure_events == {"crash", "oom"}
    env = {"TELEMD_COLLECTOR_FAILURE_EVENTS": "boom, bust"}
    assert config.load({}, str(path), env).failure_events == {"boom", "bust"}


@pytest.mark.parametrize("text", ["failure_events = 3", 'failure_events = ["a", 1]'])
def test_a_bad_list_names_file_and_key(tmp_path: Path, text: str) -> None:
    path = tmp_path / "collector.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=f"failure_events in {path} must be a list of event"):
        config.load({}, str(path), {})
