"""Uncaught Python exceptions become `org.clearlinux/python/exception` records.

    import telemd_probes.python
    telemd_probes.python.install()          # or install(config_file="/path/to.toml")

`install` sets `sys.excepthook` and `threading.excepthook`. The hooks that
were in place run first, so the program prints what it always printed and
exits with the status it always had; then, if the machine is opted in, one
record is sent: the exception type and the traceback's frames (file, line,
function; no source lines, no local values), with paths under home
directories shortened to `~`. The exception's message and a thread name the
program chose carry data (`invalid literal for int() with base 10:
'my_secret_password'`): they are sent only when the machine lifted the
privacy filters (`no_privacy_filters_file` exists). Sending is silent, waits at most two seconds
and never raises. `telemd_python_exceptions.pth` does the same for every
program of a Python installation, for those who opt in to that.

Cheap to import, since that .pth file imports it into every program:
formatting and `telemd.client` are loaded only when there is something to
report.
"""

from __future__ import annotations

import sys
import threading

# Spelled out rather than imported from typing, which costs start-up time.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

CLASSIFICATION = "org.clearlinux/python/exception"
SEVERITY = 3
SEND_TIMEOUT = 2.0
_MAX_MESSAGE_CHARS = 1024
_MAX_PAYLOAD_BYTES = 8192
_config_file: str | None = None
_installed = False


def install(config_file: str | None = None) -> None:
    """Report this program's uncaught exceptions; calling it again only changes the file."""
    global _config_file, _installed
    _config_file = config_file
    if _installed:
        return
    _installed = True
    previous_hook = sys.excepthook
    previous_thread_hook = threading.excepthook

    def excepthook(
        kind: type[BaseException], value: BaseException, tb: TracebackType | None
    ) -> None:
        previous_hook(kind, value, tb)
        report(kind, value, tb, None)

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        previous_thread_hook(args)
        if args.exc_value is not None:
            name = args.thread.name if args.thread is not None else None
            report(args.exc_type, args.exc_value, args.exc_traceback, name)

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def report(
    kind: type[BaseException], value: BaseException, tb: TracebackType | None, thread: str | None
) -> None:
    """Send one record for an uncaught exception; never raises, never prints."""
    if issubclass(kind, (KeyboardInterrupt, SystemExit)):
        return  # the user or the program chose to stop
    try:
        import os

        from telemd.client import send
        from telemd.record import Record

        from ..common.settings import load_probe_settings

        settings = load_probe_settings(_config_file)
        if not os.path.exists(settings.opt_in_file):
            return
        filtered = not os.path.exists(settings.no_privacy_filters_file)
        record = Record(CLASSIFICATION, SEVERITY, payload(kind, value, tb, thread, filtered))
        send(
            record,
            config_file=_config_file,
            socket_path=settings.client_socket,
            timeout=SEND_TIMEOUT,
        )
    except BaseException:  # a report that fails must not change how the program ends
        pass


def payload(
    kind: type[BaseException],
    value: BaseException,
    tb: TracebackType | None,
    thread: str | None,
    filtered: bool = True,
) -> str:
    """Type, program and the frames, most recent call last, within the size limit;
    the message and the thread's own name too unless `filtered`."""
    message = "" if filtered else shorten(str(value))[:_MAX_MESSAGE_CHARS]
    name = kind.__qualname__
    if kind.__module__ != "builtins":
        name = f"{kind.__module__}.{name}"
    header = [f"Exception: {name}"]
    if not filtered:
        header += [f"Message: {line}" for line in message.splitlines() or [""]]
    program = sys.argv[0] if sys.argv and sys.argv[0] else sys.executable
    header.append(f"Program: {shorten(program)}")
    if thread is not None:
        header.append(f"Thread: {_thread_name(thread) if filtered else thread}")
    header.append("Python: {}.{}.{}".format(*sys.version_info[:3]))
    frames = []
    while tb is not None:  # walked by hand: the traceback module costs milliseconds to import
        code = tb.tb_frame.f_code
        where = shorten(code.co_filename)
        frames.append(f'  File "{where}", line {tb.tb_lineno}, in {code.co_name}')
        tb = tb.tb_next
    first = message.splitlines()[0] if message.strip() else ""
    closing = f"{name}: {first}" if first else name
    head = _ascii("\n".join(header) + "\n\nTraceback (most recent call last):\n")
    tail = _ascii(closing + "\n")
    lines = [_ascii(frame + "\n") for frame in frames]
    # The innermost frames say most; the outermost go first when not all fit.
    while lines and len(head) + sum(map(len, lines)) + len(tail) > _MAX_PAYLOAD_BYTES:
        lines.pop(0)
    return head + "".join(lines) + tail


def _thread_name(name: str) -> str:
    """The name when Python made it (`Thread-3 (worker)`, from a counter and the
    target function); one the program chose may hold data, so it is withheld."""
    import re

    if name == "MainThread" or re.fullmatch(r"Thread-[0-9]+(?: \(\w+\))?", name):
        return name
    return "(named by the program)"


def shorten(text: str) -> str:
    """Home directories become `~`: `/home/alice/x.py` -> `~/x.py`."""
    import os
    import re

    home = os.path.expanduser("~")
    if len(home) > 1:
        text = text.replace(home.rstrip("/") + "/", "~/")
    return re.sub(r"(?<![\w.~-])(?:/home/[^/\s'\"]+|/root)(?=/|\b)", "~", text)


def _ascii(text: str) -> str:
    return "".join(c if " " <= c <= "~" or c == "\n" else "?" for c in text)
