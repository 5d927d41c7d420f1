"""Command line: ``python -m surveillance <command>``.

Every command reads ``DATABASE_URL`` (default ``sqlite:///data/surveillance.db``)
except ``score``, which is pure and never touches a database.  Exit status 0 on
success, 2 on input the command cannot accept (the message on standard error
says what was wrong and what to do), 1 on any other failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from typing import Any

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2


class InputError(Exception):
    """Input the command cannot accept; the message is shown as is."""


def _read_json(path: str) -> Any:
    try:
        if path == "-":
            text = sys.stdin.read()
            name = "standard input"
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
            name = path
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path} is not UTF-8 text") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{name} is not valid JSON: {err.msg} at line {err.lineno}, column {err.colno}") from None


def _cases_of(document: Any) -> tuple[list[tuple[str | None, Any]], bool]:
    """(id, case) pairs and whether the output is a single object."""
    if isinstance(document, dict) and "cases" in document:
        cases = document["cases"]
        if not isinstance(cases, list):
            raise InputError('\'cases\' must be a list of {"id": ..., "input": {...}} objects')
        pairs = []
        for index, entry in enumerate(cases):
            if not isinstance(entry, dict) or "input" not in entry:
                raise InputError(f"cases[{index}] must be an object with an 'input' case (and an 'id')")
            raw_id = entry.get("id")
            pairs.append((None if raw_id is None else str(raw_id), entry["input"]))
        return pairs, False
    if isinstance(document, list):
        return [(None, case) for case in document], False
    if isinstance(document, dict):
        return [(None, document)], True
    raise InputError('the input must be one case object, a list of cases, or {"cases": [...]}')


def cmd_score(args: argparse.Namespace) -> int:
    from surveillance.scoring import CaseError, parse_case, score_parsed

    document = _read_json(args.path)
    pairs, single = _cases_of(document)
    # Scoring allocates many small, long-lived objects (memoised results) and
    # creates no reference cycles worth collecting: with the collector running, a
    # 10,000-case call spent a third of its time in gc.
    gc.disable()
    results = []
    errors: list[str] = []
    for index, (case_id, case) in enumerate(pairs):
        try:
            parsed = parse_case(case, case_id=case_id, label=f"#{index}")
        except CaseError as err:
            errors.append(str(err))
            if len(errors) >= args.max_errors:
                break
            continue
        results.append(score_parsed(parsed))
    if errors:
        for message in errors:
            print(f"error: {message}", file=sys.stderr)
        print(
            f"{len(errors)} case(s) could not be read; nothing was scored. Fix the field(s) named above and run again.",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    write = sys.stdout.write
    if single:
        write(json.dumps(results[0], ensure_ascii=False, indent=None if args.compact else 2))
    else:
        # One result per line: still one JSON list, readable, and encoded by the
        # C encoder (an indented dump of 10,000 results is four times slower).
        write("[" if args.compact else "[\n")
        separator = "," if args.compact else ",\n"
        write(separator.join(json.dumps(result, ensure_ascii=False) for result in results))
        write("]" if args.compact else "\n]")
    write("\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m surveillance",
        description="Cancer Locomo surveillance: score, recompute, alert.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = sub.add_parser(
        "score",
        help="score cases in the JSON case format (shared/case-format.md); no database",
        description='Score one case, a list of cases, or {"cases": [...]}. Output: JSON on standard output.',
    )
    score.add_argument("path", metavar="PATH", help="a JSON file, or - for standard input")
    score.add_argument("--compact", action="store_true", help="one-line JSON instead of indented")
    score.add_argument("--max-errors", type=int, default=50, help="stop reporting after this many invalid cases")
    score.set_defaults(handler=cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(encoding="utf-8")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
