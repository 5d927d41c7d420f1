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
from datetime import UTC
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
    except RecursionError:
        raise InputError(f"{name} is nested too deeply to be a case file") from None


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
    # 10,000-case call spent a third of its time in gc.  Restored afterwards, for
    # callers that run the command in their own process (tests, fuzzers).
    collecting = gc.isenabled()
    gc.disable()
    results = []
    errors: list[str] = []
    try:
        for index, (case_id, case) in enumerate(pairs):
            try:
                parsed = parse_case(case, case_id=case_id, label=f"#{index}")
            except CaseError as err:
                errors.append(str(err))
                if len(errors) >= args.max_errors:
                    break
                continue
            results.append(score_parsed(parsed))
    finally:
        if collecting:
            gc.enable()
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


# ---------------------------------------------------------------------------
# Database commands
# ---------------------------------------------------------------------------


def _engine(args: argparse.Namespace, *, check_schema: bool = True):
    from db.engine import get_engine
    from db.schema import SchemaOutOfDate, require_current

    engine = get_engine()
    if check_schema:
        try:
            require_current(engine)
        except SchemaOutOfDate as err:
            raise InputError(str(err)) from None
    return engine


def _now():
    from datetime import datetime

    return datetime.now(UTC)


class Progress:
    """One line on standard error, rewritten in place on a terminal."""

    def __init__(self, label: str):
        self.label = label
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, stage: str | None = None) -> None:
        share = f" ({100 * done / total:.0f}%)" if total else ""
        text = f"{self.label}{' ' + stage if stage else ''}: {done:,}/{total:,}{share}"
        print(("\r" + text) if self.tty else text, end="" if self.tty else "\n", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from db.schema import SchemaOutOfDate, current_revision, head_revision, upgrade

    engine = _engine(args, check_schema=False)
    before = current_revision(engine)
    try:
        upgrade(engine)
    except SchemaOutOfDate as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"database at revision {head_revision()} (was {before or 'empty'})", file=sys.stderr)
    return EXIT_OK


def cmd_db_grant_app_role(args: argparse.Namespace) -> int:
    from db.privileges import app_role_statements, grant_app_role

    engine = _engine(args)
    try:
        if args.print:
            statements = app_role_statements(args.role, engine.url.database or "")
        else:
            statements = grant_app_role(engine, args.role)
    except ValueError as err:
        raise InputError(str(err)) from None
    for statement in statements:
        print(statement + ";")
    if not args.print:
        print(f"role {args.role} granted least privilege (audit tables: no UPDATE/DELETE/TRUNCATE)", file=sys.stderr)
    return EXIT_OK


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the chain and its anchor verify; 1 naming the first bad event otherwise."""
    from surveillance.audit import verify

    engine = _engine(args)
    report = verify(engine, expected_head=args.expected_head, expected_count=args.expected_count)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(report.summary())
    if not report.ok:
        print(f"error: {report.summary()}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _demo_state(engine) -> tuple[int, str | None]:
    """(patients in the database, the demo marker: None, "generating" or "1")."""
    from sqlalchemy import text

    with engine.connect() as conn:
        patients = conn.execute(text("SELECT COUNT(*) FROM patient")).scalar()
        marker = conn.execute(text("SELECT value FROM app_setting WHERE key = 'demo_mode'")).scalar()
    return int(patients), marker


def _reset_demo(engine) -> None:
    """Empty a demo database (only ever one marked as demo data): drop every table, then migrate again."""
    from sqlalchemy import MetaData

    from db.schema import upgrade

    metadata = MetaData()
    metadata.reflect(engine)
    metadata.drop_all(engine)
    upgrade(engine)


def cmd_demo(args: argparse.Namespace) -> int:
    from db.schema import upgrade
    from surveillance.calendar import clinical_day
    from surveillance.demo import DEMO_USERS, generate_demo
    from surveillance.jobs import run_recompute

    engine = _engine(args, check_schema=False)
    upgrade(engine)
    patients, marker = _demo_state(engine)
    if patients and marker is None:
        raise InputError(
            f"{engine.url.render_as_string(hide_password=True)} already holds {patients:,} patients that are not "
            "demo data; refusing to touch it. Point DATABASE_URL at another database for the demo."
        )
    if patients and marker == "1" and not args.reset:
        print(f"demo data already present ({patients:,} patients); keeping it (use --reset to regenerate)",
              file=sys.stderr)
        _print_demo_logins(DEMO_USERS)
        return EXIT_OK
    if patients:  # --reset, or an earlier demo run that did not finish
        _reset_demo(engine)
    _mark_demo(engine, "generating")
    progress = Progress("demo")
    try:
        summary = generate_demo(
            engine,
            patients=args.patients,
            seed=args.seed,
            today=clinical_day(_now()),
            progress=lambda stage, done, total: progress(done, total, stage),
        )
    except ValueError as err:
        raise InputError(str(err)) from None
    progress.done()
    recompute_progress = Progress("recompute")
    result = run_recompute(engine, full=True, trigger="demo", progress=recompute_progress)
    recompute_progress.done()
    _mark_demo(engine, "1")
    print(
        f"demo: {args.patients:,} patients in {summary.seconds:.1f} s; recompute {result.seconds:.1f} s, "
        f"{result.alerts_opened:,} alerts",
        file=sys.stderr,
    )
    _print_demo_logins(DEMO_USERS)
    return EXIT_OK


def _print_demo_logins(users) -> None:
    print("demo logins (username / password / role):", file=sys.stderr)
    for user in users:
        print(f"  {user.username} / {user.password} / {user.role}", file=sys.stderr)


def _mark_demo(engine, value: str) -> None:
    """Remember that this database holds fictional demo data (the login page then lists the demo accounts);
    "generating" while it is being made, so an interrupted demo is regenerated rather than kept."""
    from db import bulk
    from db.engine import writer

    with writer(engine).connect() as conn, conn.begin():
        bulk.execute(conn, bulk.upsert_sql("app_setting", ["key", "value", "updated_at"], ["key"]),
                     ("demo_mode", value, _now()))


def cmd_recompute(args: argparse.Namespace) -> int:
    from surveillance.jobs import run_recompute

    engine = _engine(args)
    progress = Progress("recompute")
    options = {"batch_size": args.batch_size} if args.batch_size else {}
    result = run_recompute(engine, full=args.full, trigger="cli", progress=progress, **options)
    progress.done()
    if result is None:
        print("error: another recompute holds the lease (a scheduler is running it); try again later", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(
            f"{result.kind} recompute {result.status}: {result.patients:,} patients, {result.snapshots_written:,} "
            f"snapshots written, {result.alerts_opened:,} alerts opened, {result.alerts_resolved:,} resolved "
            f"in {result.seconds:.1f} s (run {result.run_id})"
        )
    return EXIT_OK if result.status == "success" else EXIT_FAILURE


def cmd_alerts(args: argparse.Namespace) -> int:
    from surveillance.reports import active_alerts

    engine = _engine(args)
    rows = active_alerts(engine, limit=args.limit)
    if args.json:
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, default=str) + "\n")
    else:
        for row in rows:
            print(f"{row['severity']:<9} {row['status']:<13} {row['mrn']:<10} {row['rule_id']:<28} {row['title']}")
        print(f"{len(rows)} active alert(s)", file=sys.stderr)
    return EXIT_OK


def cmd_patients(args: argparse.Namespace) -> int:
    from surveillance.reports import iter_patient_summaries

    engine = _engine(args)
    rows = iter_patient_summaries(engine, mrn=args.mrn)
    if args.mrn is not None:
        rows = list(rows)
        if not rows:
            raise InputError(f"no patient with MRN {args.mrn}")
    write = sys.stdout.write
    if args.json:
        write("[")
        for index, row in enumerate(rows):
            write(("," if index else "") + "\n" + json.dumps(row, ensure_ascii=False, default=str))
        write("\n]\n")
    else:
        for row in rows:
            write(
                f"{row['mrn']:<10} {row['status']:<11} {row['primary_site'] or '?':<20} tier={row['tier']:<12} "
                f"due={row['next_imaging_due'] or '-':<10} alerts={row['open_alerts']}\n"
            )
    return EXIT_OK


def cmd_users_add(args: argparse.Namespace) -> int:
    from surveillance.service import ServiceError
    from surveillance.users import add_user

    engine = _engine(args)
    password = sys.stdin.readline().rstrip("\n")
    try:
        user_id = add_user(
            engine,
            actor=f"cli:{_os_user()}",
            username=args.username,
            role=args.role,
            password=password,
            display_name=args.display_name,
            department=args.department,
            now=_now(),
        )
    except ServiceError as err:
        raise InputError(str(err)) from None
    print(f"user {args.username} ({args.role}) created with id {user_id}", file=sys.stderr)
    return EXIT_OK


def cmd_users_disable(args: argparse.Namespace) -> int:
    from surveillance.service import ServiceError
    from surveillance.users import set_active

    engine = _engine(args)
    try:
        set_active(engine, actor=f"cli:{_os_user()}", username=args.username, active=False, now=_now())
    except ServiceError as err:
        raise InputError(str(err)) from None
    print(f"user {args.username} disabled", file=sys.stderr)
    return EXIT_OK


def cmd_users_set_role(args: argparse.Namespace) -> int:
    from surveillance.service import ServiceError
    from surveillance.users import set_role

    engine = _engine(args)
    try:
        set_role(engine, actor=f"cli:{_os_user()}", username=args.username, role=args.role, now=_now())
    except ServiceError as err:
        raise InputError(str(err)) from None
    print(f"user {args.username} now has role {args.role}", file=sys.stderr)
    return EXIT_OK


def _os_user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "unknown"


def cmd_scheduler(args: argparse.Namespace) -> int:
    from surveillance.scheduler import main as scheduler_main

    return scheduler_main()


def cmd_state_rebuild(args: argparse.Namespace) -> int:
    from surveillance.state import rebuild_all_states

    engine = _engine(args)
    progress = Progress("state rebuild")
    count = rebuild_all_states(engine, progress=progress)
    progress.done()
    print(
        f"patient_state rebuilt for {count:,} patients; run `python -m surveillance recompute --full` next",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    from surveillance.backup import BackupError, backup

    engine = _engine(args)
    try:
        info = backup(engine, args.path, actor=f"cli:{_os_user()}", now=_now())
    except BackupError as err:
        raise InputError(str(err)) from None
    print(
        f"backup written: {info.path} ({info.backend}, schema {info.revision}, {info.size_bytes:,} bytes, "
        f"sha256 {info.sha256}) in {info.seconds:.1f} s",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from surveillance.backup import BackupError, restore

    engine = _engine(args, check_schema=False)
    try:
        info = restore(engine, args.path, actor=f"cli:{_os_user()}", now=_now(), confirm=args.yes)
    except BackupError as err:
        raise InputError(str(err)) from None
    upgraded = f", then upgraded to {info.upgraded_to}" if info.upgraded_to else ""
    print(
        f"restored {info.path} (schema {info.revision}{upgraded}) in {info.seconds:.1f} s; "
        f"audit trail: {info.audit_events:,} events, chain {'intact' if info.audit_chain_ok else 'BROKEN'}",
        file=sys.stderr,
    )
    if not info.audit_chain_ok:
        print(f"error: the restored audit chain does not verify: {info.audit_problem}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    """Import FHIR R4 JSON / CSV files: each file whole or not at all (``--partial``: its valid entries)."""
    import json as _json
    from pathlib import Path

    from surveillance.importing import import_file

    engine = _engine(args)
    for name in args.files:
        if not Path(name).is_file():
            raise InputError(f"{name}: no such file")
    results = []
    for name in args.files:
        progress = Progress(f"import {Path(name).name}")
        result = import_file(
            engine, Path(name), actor=f"cli:{_os_user()}", now=_now(), partial=args.partial, progress=progress
        )
        progress.done()
        results.append(result)
        if not args.json:
            counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items())) or "nothing written"
            print(f"{name}: {result.status} ({counts}); sha256 {result.file_sha256}")
            for issue in result.issues:
                entry = "-" if issue.entry_index is None else str(issue.entry_index)
                print(f"  {issue.severity:<7} entry {entry:>5}  {issue.location}: {issue.message}")
    if args.json:
        print(_json.dumps([r.as_dict() for r in results], indent=2, default=str))
    return EXIT_FAILURE if any(r.status == "rejected" for r in results) else EXIT_OK


def cmd_export_patient(args: argparse.Namespace) -> int:
    """One patient as a FHIR R4 Bundle (JSON) to FILE or standard output, recorded as a disclosure."""
    from pathlib import Path

    from surveillance.access import ALL_DEPARTMENTS, Identity, Role
    from surveillance.importing.export import ExportError, export_patient_file, patient_id_for_mrn

    out = Path(args.output) if args.output else None
    if out is not None and out.exists():
        raise InputError(f"{out}: already exists (an export never overwrites a file)")
    engine = _engine(args)
    try:
        pid = patient_id_for_mrn(engine, args.mrn)
    except ExportError as err:
        raise InputError(str(err)) from None
    # whoever holds DATABASE_URL at the command line may read every record; the disclosure names the OS user
    operator = Identity(0, f"cli:{_os_user()}", "command line", Role.PHYSICIAN, ALL_DEPARTMENTS)
    content, export = export_patient_file(engine, operator, pid, now=_now())
    if out is None:
        sys.stdout.buffer.write(content)
        sys.stdout.flush()
    else:
        out.write_bytes(content)
    print(f"patient {args.mrn}: {len(export.bundle['entry'])} resources{f' to {out}' if out else ''}", file=sys.stderr)
    for what, rows in export.left_out.items():
        print(f"  not in the file (no FHIR mapping the importer reads back): {what} x{rows}", file=sys.stderr)
    for what, rows in export.added.items():
        print(f"  a re-import would add: {what} x{rows}", file=sys.stderr)
    return EXIT_OK


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} must be at least 1")
    return number


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

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="migrate the database to the current schema (alembic upgrade head)").set_defaults(
        handler=cmd_db_upgrade
    )
    grant = db_sub.add_parser(
        "grant-app-role",
        help="PostgreSQL: give an existing login role least privilege (no UPDATE/DELETE/TRUNCATE on the audit trail)",
    )
    grant.add_argument("role")
    grant.add_argument("--print", action="store_true", help="only print the SQL")
    grant.set_defaults(handler=cmd_db_grant_app_role)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser(
        "verify",
        help="verify the hash chain and its anchor; exit 1 naming the first edited, deleted or reordered event, "
        "or a truncated tail",
    )
    verify.add_argument("--json", action="store_true", help="print the report as JSON (ship it elsewhere as an anchor)")
    verify.add_argument("--expected-head", help="a head hash from an earlier report kept outside the database")
    verify.add_argument("--expected-count", type=int, help="the event count from that earlier report")
    verify.set_defaults(handler=cmd_audit_verify)

    demo = sub.add_parser("demo", help="create the schema, fictional demo patients and demo logins, then recompute")
    demo.add_argument("--patients", type=int, default=2000, help="how many patients (default 2000)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--reset", action="store_true", help="regenerate an existing demo database")
    demo.set_defaults(handler=cmd_demo)

    recompute = sub.add_parser("recompute", help="recompute scores, snapshots and alerts (incremental by default)")
    recompute.add_argument("--full", action="store_true", help="every patient, not only the changed ones")
    recompute.add_argument("--json", action="store_true", help="print the run as JSON")
    recompute.add_argument(
        "--batch-size", type=_positive_int, help="patients per batch (one transaction each; default 50,000 full, 5,000 incremental)"
    )
    recompute.set_defaults(handler=cmd_recompute)

    alerts = sub.add_parser("alerts", help="list active alerts")
    alerts.add_argument("--json", action="store_true")
    alerts.add_argument("--limit", type=int, default=10_000)
    alerts.set_defaults(handler=cmd_alerts)

    patients = sub.add_parser("patients", help="list patients with their latest scores, tier and alerts")
    patients.add_argument("--json", action="store_true")
    patients.add_argument("--mrn", help="only this patient")
    patients.set_defaults(handler=cmd_patients)

    users = sub.add_parser("users", help="manage users (audited)")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser("add", help="add a user; the password is read from standard input")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["nurse", "physician", "lead", "admin"])
    add.add_argument("--display-name")
    add.add_argument("--department")
    add.set_defaults(handler=cmd_users_add)
    disable = users_sub.add_parser("disable", help="disable a user (effective at their next action)")
    disable.add_argument("username")
    disable.set_defaults(handler=cmd_users_disable)
    set_role = users_sub.add_parser("set-role", help="change a user's role (effective at their next action)")
    set_role.add_argument("username")
    set_role.add_argument("--role", required=True, choices=["nurse", "physician", "lead", "admin"])
    set_role.set_defaults(handler=cmd_users_set_role)

    backup_cmd = sub.add_parser(
        "backup", help="copy the whole database to a new file (SQLite online backup API; PostgreSQL pg_dump -Fc)"
    )
    backup_cmd.add_argument("path", metavar="PATH", help="the backup file to create (never overwritten)")
    backup_cmd.set_defaults(handler=cmd_backup)
    restore_cmd = sub.add_parser(
        "restore", help="replace the whole database with a backup (checked first; needs --yes; audited)"
    )
    restore_cmd.add_argument("path", metavar="PATH", help="a file made by `backup`")
    restore_cmd.add_argument("--yes", action="store_true", help="confirm: replace everything in DATABASE_URL")
    restore_cmd.set_defaults(handler=cmd_restore)

    sub.add_parser("scheduler", help="run the scheduler service (incremental runs and a daily full run)").set_defaults(
        handler=cmd_scheduler
    )
    imp = sub.add_parser(
        "import",
        help="import FHIR R4 JSON (mCODE) or CSV files; a file with an error is rejected whole (exit 1)",
    )
    imp.add_argument("files", nargs="+", metavar="FILE")
    imp.add_argument("--partial", action="store_true", help="import the valid entries of a file with errors")
    imp.add_argument("--json", action="store_true", help="print the reports as JSON")
    imp.set_defaults(handler=cmd_import)
    export = sub.add_parser("export", help="export patient data (audited as a disclosure)")
    export_sub = export.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    export_patient = export_sub.add_parser(
        "patient",
        help="one patient as a FHIR R4 Bundle (JSON) that `import` reads back; what it cannot carry is listed",
    )
    export_patient.add_argument("--mrn", required=True, help="the patient's medical record number")
    export_patient.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (never overwritten); default stdout"
    )
    export_patient.set_defaults(handler=cmd_export_patient)
    state = sub.add_parser("state", help="maintenance of the derived patient_state table")
    state_sub = state.add_subparsers(dest="state_command", required=True, metavar="ACTION")
    state_sub.add_parser("rebuild", help="recompute patient_state from the facts for every patient").set_defaults(
        handler=cmd_state_rebuild
    )
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
