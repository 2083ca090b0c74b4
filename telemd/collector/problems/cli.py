"""`telemd-collector problems | problem ID | builds | skip-frame | reprocess`.

The same queries as the routes, printed as a table fit for `grep` or, with
--json, as the routes' JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from telemd.collector.ingest.records import FieldError
from telemd.collector.problems import queries, skip_frames
from telemd.collector.problems.queries import KINDS, parse_problem_query, problem_id
from telemd.collector.problems.reprocess import reprocess
from telemd.collector.store.base import Store

COMMANDS = ("problems", "problem", "builds", "skip-frame", "reprocess")
Table = Callable[[Sequence[Sequence[object]], Sequence[str]], str]


def add_commands(command: Callable[[str, str], argparse.ArgumentParser]) -> None:
    problems = command("problems", "Print problems, most frequent first.")
    problems.add_argument("--kind", choices=KINDS)
    problems.add_argument("--build")
    problems.add_argument("--since", help="last seen at or after: unix seconds or ISO-8601 time")
    problems.add_argument("--sort", choices=queries.SORTS, default="occurrences")
    problems.add_argument("--limit", default="50")
    problems.add_argument("--after", help="the `next` the previous page printed")
    problems.add_argument("--json", action="store_true", help="print JSON")

    problem = command("problem", "Print one problem: backtrace, days, builds, machines.")
    problem.add_argument("id", metavar="ID")
    problem.add_argument("--json", action="store_true", help="print JSON")

    builds = command("builds", "Print each build's machines, records, problems and crash rate.")
    builds.add_argument("--limit", default="100")
    builds.add_argument("--json", action="store_true", help="print JSON")

    skip = command("skip-frame", "Edit the frames crash signatures skip.")
    skip.add_argument("action", choices=("add", "remove", "list"))
    skip.add_argument("pattern", nargs="?", help="a shell pattern, e.g. '__GI_*'")

    command("reprocess", "Recompute every record's signature and rebuild the counts.")


def run(store: Store, args: argparse.Namespace, table: Table) -> int:
    """Run one of COMMANDS; return the exit status."""
    if args.command == "problems":
        values = {
            name: getattr(args, name)
            for name in ("kind", "build", "since", "sort", "limit", "after")
            if getattr(args, name) is not None
        }
        page = queries.list_problems(store, parse_problem_query(values))
        if args.json:
            print(json.dumps(page, indent=1))
        else:
            print(table([_problem_row(p) for p in page["problems"]], PROBLEM_HEADER))
            if page["next"] is not None:
                print(f"(more: --after {page['next']})")
        return 0
    if args.command == "problem":
        number = problem_id(args.id)
        detail = queries.problem_detail(store, number) if number else None
        if detail is None:
            raise FieldError("id", f"no problem {args.id[:40]!r}")
        print(json.dumps(detail, indent=1) if args.json else _detail_text(detail, table))
        return 0
    if args.command == "builds":
        from telemd.collector.server.params import integer

        listing = queries.list_builds(store, integer("limit", args.limit, 1, 1000), time.time())
        if args.json:
            print(json.dumps(listing, indent=1))
        else:
            rows = [
                (b["build"], b["machines"], b["records"], b["problems"], b["crashes"],
                 b["crashes_per_1000_machines"], _when(b["first_seen"]))
                for b in listing["builds"]
            ]  # fmt: skip
            header = ("BUILD", "MACHINES", "RECORDS", "PROBLEMS", "CRASHES", "PER_1000", "FIRST")
            print(table(rows, header))
        return 0
    if args.command == "skip-frame":
        return _skip_frame(store, args)
    records, problems = reprocess(store)
    print(f"reprocessed {records} records into {problems} problems")
    return 0


PROBLEM_HEADER = ("ID", "KIND", "OCCURRENCES", "MACHINES", "BUILDS", "LAST_SEEN", "TITLE")


def _problem_row(p: dict[str, Any]) -> tuple[object, ...]:
    return (
        p["id"], p["kind"], p["occurrences"], p["machines"], p["builds"], _when(p["last_seen"]),
        p["title"],
    )  # fmt: skip


def _detail_text(detail: dict[str, Any], table: Table) -> str:
    p = detail["problem"]
    parts = [
        f"{p['title']}",
        f"id {p['id']}, {p['kind']}, {p['occurrences']} occurrences on {p['machines']} machines"
        f" in {p['builds']} builds; first seen {_when(p['first_seen'])} (build"
        f" {p['first_build']}), last seen {_when(p['last_seen'])}",
        f"signature: {p['signature']}",
        "",
        (p["backtrace"] or "(the representative record is no longer stored)").rstrip("\n"),
        "",
        table([(d["day"], d["occurrences"]) for d in detail["days"]], ("DAY", "OCCURRENCES")),
        "",
        table([(b["build"], b["occurrences"]) for b in detail["builds"]], ("BUILD", "OCCURRENCES")),
        "",
        table(
            [
                (m["machine_id"], m["occurrences"], _when(m["last_seen"]))
                for m in detail["machines"]
            ],
            ("MACHINE", "OCCURRENCES", "LAST_SEEN"),
        ),
    ]
    return "\n".join(parts)


def _skip_frame(store: Store, args: argparse.Namespace) -> int:
    if args.action == "list":
        with store.reading() as session:
            print("\n".join(skip_frames.load(session).patterns))
        return 0
    if args.pattern is None:
        raise FieldError("pattern", f"skip-frame {args.action} needs a PATTERN")
    try:
        pattern = skip_frames.check_pattern(args.pattern)
    except ValueError as exc:
        raise FieldError("pattern", str(exc)) from None
    with store.transaction() as session:
        if args.action == "add":
            changed = session.execute(
                "INSERT INTO skip_frames (pattern) VALUES (?) ON CONFLICT (pattern) DO NOTHING",
                (pattern,),
            )
        else:
            changed = session.execute("DELETE FROM skip_frames WHERE pattern = ?", (pattern,))
    done = {"add": ("added", "was already listed"), "remove": ("removed", "was not listed")}
    print(f"{pattern}: {done[args.action][0 if changed else 1]}; "
          "`telemd-collector reprocess` applies the list to stored records")  # fmt: skip
    return 0


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
