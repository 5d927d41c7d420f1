"""System health and Users and audit (admin): runs from ``job_run``, the stale-data banner, users, audit verification.

Runs are inserted and dated here, the audit trail is tampered with here, and
each expectation is a query of the database or the requirement (scores are
stale when the last successful recompute is older than its interval and a 5-minute grace).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from tests.dashboard.conftest import login, new_app, page
from tests.dashboard.support import EN

pytestmark = pytest.mark.db

STALE_PREFIX = EN.t("app.stale", age="\x00", interval="\x00").split("\x00")[0]


def _open(app_db, name: str) -> AppTest:
    at = login(new_app(), app_db["engine"], "admin1")
    page(at, name)
    assert not at.exception, at.exception
    return at


def _add_run(conn, *, trigger: str, status: str, started: datetime, seconds: float | None, message: str | None):
    conn.execute(
        text(
            "INSERT INTO job_run (kind, trigger, started_at, finished_at, status, patients, snapshots_written, "
            "alerts_opened, alerts_resolved, batches, message) VALUES ('incremental', :trigger, :started, :finished, "
            ":status, 0, 0, 0, 0, 0, :message)"
        ),
        {
            "trigger": trigger,
            "started": started,
            "status": status,
            "message": message,
            "finished": None if seconds is None else started + timedelta(seconds=seconds),
        },
    )


def _metric(at: AppTest, label_key: str) -> str:
    values = [m.value for m in at.metric if m.label == EN.t(label_key)]
    assert len(values) == 1, label_key
    return values[0]


def test_health_lists_the_recompute_runs_with_failed_and_missed_counts(app_db):
    engine = app_db["engine"]
    now = datetime.now(timezone.utc)
    with engine.begin() as conn:
        _add_run(
            conn,
            trigger="scheduler",
            status="failed",
            started=now - timedelta(hours=2),
            seconds=4,
            message="database unavailable (test)",
        )
        _add_run(
            conn,
            trigger="missed",
            status="missed",
            started=now - timedelta(hours=1),
            seconds=None,
            message="tick fired too late (test)",
        )
        _add_run(
            conn,
            trigger="service",
            status="success",
            started=now - timedelta(minutes=5),
            seconds=1,
            message="one patient rescored after a form (test)",
        )
    with engine.connect() as conn:
        runs = {r.id: r for r in conn.execute(text("SELECT id, trigger, status, message FROM job_run"))}
        failed = conn.execute(text("SELECT COUNT(*) FROM job_run WHERE status = 'failed'")).scalar()
        missed = conn.execute(text("SELECT COUNT(*) FROM job_run WHERE status = 'missed'")).scalar()
    recompute_runs = {i for i, r in runs.items() if r.trigger != "service"}  # a form's one-patient rescore is not a run
    assert len(recompute_runs) == 3 and failed == 1 and missed == 1
    at = _open(app_db, "health")
    tables = [f.value for f in at.dataframe if EN.t("health.col_id") in f.value.columns]
    assert len(tables) == 1
    table = tables[0].set_index(EN.t("health.col_id"))
    assert sorted(table.index) == sorted(recompute_runs)
    assert list(table.index) == sorted(table.index, reverse=True), "newest first"
    for run_id in recompute_runs:
        assert table.loc[run_id, EN.t("health.col_status")] == EN.t(f"health.run_status_{runs[run_id].status}")
        assert table.loc[run_id, EN.t("health.col_message")] == (runs[run_id].message or "—")
    assert _metric(at, "health.failed") == EN.number(failed)
    assert _metric(at, "health.missed") == EN.number(missed)
    assert at.get("plotly_chart") and at.get("download_button")


@pytest.mark.parametrize(
    ("hours_ago", "interval_seconds", "stale"),
    [
        (3, None, True),  # three hours without a successful run at the default 15-minute interval
        (0, None, False),  # a run just finished
        (3, 4 * 3600, False),  # three hours is within a 4-hour interval
        (1, 45 * 60, True),  # an hour is past a 45-minute interval and its 5-minute grace
        (1, 3600, False),  # an hour at a 1-hour interval: the next run may still be running
        (1, 20, True),  # a demo's 20-second interval is said in seconds
    ],
)
def test_stale_data_banner_follows_the_last_successful_run_and_its_interval(
    app_db, monkeypatch, hours_ago, interval_seconds, stale
):
    engine = app_db["engine"]
    if interval_seconds is not None:
        monkeypatch.setenv("SCHEDULER_INCREMENTAL_SECONDS", str(interval_seconds))
    finished = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE job_run SET started_at = :s, finished_at = :f WHERE status = 'success'"),
            {"s": finished - timedelta(minutes=1), "f": finished},
        )
        # A later failed run does not make the data fresh.
        _add_run(
            conn,
            trigger="scheduler",
            status="failed",
            started=datetime.now(timezone.utc),
            seconds=2,
            message="failed (test)",
        )
    at = _open(app_db, "health")
    banners = [w.value for w in at.warning if w.value.startswith(STALE_PREFIX)]
    if stale:
        assert len(banners) == 1
        every = interval_seconds or 900
        wanted = f"expected every {every // 60} min" if every >= 60 else f"expected every {every} s"
        assert wanted in banners[0]
        assert f"was {hours_ago} h " in banners[0]
    else:
        assert banners == []


def test_users_are_listed_and_the_audit_chain_verification_is_shown(app_db):
    engine = app_db["engine"]
    at = _open(app_db, "admin")
    with engine.connect() as conn:
        usernames = sorted(r.username for r in conn.execute(text("SELECT username FROM app_user")))
        events = conn.execute(text("SELECT COUNT(*) FROM audit_event")).scalar()
    users = [f.value for f in at.dataframe if EN.t("admin.username") in f.value.columns]
    assert len(users) == 1
    assert sorted(users[0][EN.t("admin.username")]) == usernames
    assert EN.t("admin.events", n=EN.number(events)) in [c.value for c in at.caption]
    audit = [f.value for f in at.dataframe if EN.t("admin.col_event") in f.value.columns]
    assert len(audit) == 1 and len(audit[0]) == events

    verify = [b for b in at.button if b.label == EN.t("admin.verify")]
    assert len(verify) == 1
    verify[0].click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [EN.t("admin.chain_ok", n=EN.number(events))]
    assert not at.error

    with engine.begin() as conn:  # a DBA who first removes the append-only guard (tests/test_audit.py)
        edited = conn.execute(text("SELECT MIN(id) FROM audit_event WHERE action = 'login'")).scalar()
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER USER"))
        else:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
        conn.execute(text("UPDATE audit_event SET actor = 'someone-else' WHERE id = :id"), {"id": edited})
    [b for b in at.button if b.label == EN.t("admin.verify")][0].click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1
    with engine.connect() as conn:
        edited_at = conn.execute(text("SELECT occurred_at FROM audit_event WHERE id = :id"), {"id": edited}).scalar()
    assert errors[0].startswith(EN.t("admin.chain_bad", id=edited, at=EN.datetime(edited_at), problem="")), errors
    assert "edited" in errors[0]
    assert not at.success
