"""A small getopt_long-style parser for the probe-path commands.

`argparse` and `getopt` both import `gettext` and `re`; on a command whose
whole run should cost little more than starting Python, that is most of the
budget. This parser handles what those commands need: `-x VALUE`, `-xVALUE`,
`--long VALUE`, `--long=VALUE`, flags, and `--`.
"""

from __future__ import annotations


class UsageError(Exception):
    """Bad command line; the message is shown with the usage hint, exit status 2."""


def parse(
    argv: list[str], options: dict[str, tuple[str, bool]]
) -> tuple[dict[str, str | bool], list[str]]:
    """Parse `argv` against {short letter: (long name, takes a value)}.

    Returns ({long name: value or True}, positional arguments).
    """
    by_long = {long: (long, takes) for long, takes in options.values()}
    result: dict[str, str | bool] = {}
    positional: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        index += 1
        if arg == "--":
            positional.extend(argv[index:])
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            if name not in by_long:
                raise UsageError(f"unknown option --{name}")
            long, takes = by_long[name]
            if not takes:
                if has_value:
                    raise UsageError(f"option --{name} takes no value")
                result[long] = True
                continue
            if not has_value:
                if index >= len(argv):
                    raise UsageError(f"option --{name} needs a value")
                value = argv[index]
                index += 1
            result[long] = value
        elif arg.startswith("-") and len(arg) > 1:
            letters = arg[1:]
            while letters:
                letter, letters = letters[0], letters[1:]
                if letter not in options:
                    raise UsageError(f"unknown option -{letter}")
                long, takes = options[letter]
                if not takes:
                    result[long] = True
                    continue
                if not letters:
                    if index >= len(argv):
                        raise UsageError(f"option -{letter} needs a value")
                    letters = argv[index]
                    index += 1
                result[long] = letters
                letters = ""
        else:
            positional.append(arg)
    return result, positional
