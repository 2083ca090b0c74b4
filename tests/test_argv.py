"""The small option parser of the probe-path commands."""

from __future__ import annotations

import pytest

from telemd.cli.argv import UsageError, parse

OPTIONS = {
    "s": ("severity", True),
    "c": ("class", True),
    "o": ("echo", False),
    "n": ("no-post", False),
}


def test_short_long_joined_and_clustered_forms() -> None:
    options, rest = parse(["-s3", "--class", "a/b/c", "-on", "--severity=2", "x"], OPTIONS)
    assert options == {"severity": "2", "class": "a/b/c", "echo": True, "no-post": True}
    assert rest == ["x"]
    options, _ = parse(["-c", "-p"], OPTIONS)
    assert options == {"class": "-p"}


def test_double_dash_ends_options() -> None:
    assert parse(["--", "-s"], OPTIONS) == ({}, ["-s"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-x"], "unknown option -x"),
        (["--nope"], "unknown option --nope"),
        (["-s"], "option -s needs a value"),
        (["--class"], "option --class needs a value"),
        (["--echo=yes"], "option --echo takes no value"),
    ],
)
def test_mistakes_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(argv, OPTIONS)
