"""The prepared batch: worker processes, the Arrow reader, and the plan skipped when nothing can change.

Each database test runs on SQLite and PostgreSQL.  The skip is only safe if a
patient it skips would have got an empty plan; these tests change one input at a
time (the firings, the alert rows, the clock) and check the patient is planned.
"""

from __future__ import annotations

import multiprocessing
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import text

from db.engine import get_engine
from db.readers import DbapiReader, column_from_values
from db.schema import upgrade
from surveillance.pipeline import incremental_ids, recompute
from surveillance.prepare import NO_ALERTS, Selection, _pair_keys, _value_hashes, alert_digests, clock_due
from surveillance.rules.engine import RULE_ORDER
from tests import factories
from tests.test_pipeline import _plain, _snapshots

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _alerts(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(_plain(v) for v in r)
            for r in conn.execute(
                text(
                    "SELECT patient_id, rule_id, evidence_key, severity, status, evidence FROM alert "
                    "ORDER BY patient_id, rule_id, id"
                )
            )
        ]


def test_worker_processes_write_what_one_process_writes(db_url, tmp_path):
    """Two spawned workers (ADBC on SQLite) and the writer give the snapshots and alerts one process gives."""
    workers = get_engine(db_url)
    factories.add_patients(workers, 90, seed=21)
    alone = get_engine(f"sqlite:///{tmp_path / 'alone.db'}")
    upgrade(alone)
    factories.add_patients(alone, 90, seed=21)

    a = recompute(workers, full=True, now=NOW, batch_size=13, workers=2)
    b = recompute(alone, full=True, now=NOW, batch_size=13, workers=0)
    assert (
        (a.patients, a.batches, a.alerts_opened) == (b.patients, b.batches, b.alerts_opened) == (90, 7, b.alerts_opened)
    )
    assert b.alerts_opened > 0
    assert _snapshots(workers) == _snapshots(alone)
    assert _alerts(workers) == _alerts(alone)

    # A day later, through the workers again: the clock moved, so some plans change, and both stores agree.
    later = NOW + timedelta(days=40)
    recompute(workers, full=True, now=later, batch_size=13, workers=2)
    recompute(alone, full=True, now=later, batch_size=13, workers=0)
    assert _snapshots(workers) == _snapshots(alone)
    assert _alerts(workers) == _alerts(alone)


def test_a_rerun_on_unchanged_data_plans_no_one_and_writes_nothing(engine):
    factories.add_patients(engine, 60, seed=22)
    first = recompute(engine, full=True, now=NOW, batch_size=25)
    assert first.planned == 60  # nothing stored yet: every patient planned
    before, alerts = _snapshots(engine), _alerts(engine)
    rerun = recompute(engine, full=True, now=NOW + timedelta(minutes=5), batch_size=25)
    assert (rerun.planned, rerun.snapshots_written, rerun.alerts_opened, rerun.alerts_resolved) == (0, 0, 0, 0)
    assert _snapshots(engine) == before and _alerts(engine) == alerts


def _patient_with_open_alerts(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            text(
                "SELECT patient_id FROM alert WHERE status = 'open' GROUP BY patient_id "
                "HAVING COUNT(*) >= 2 ORDER BY patient_id LIMIT 1"
            )
        ).scalar_one()


def test_an_alert_changed_without_a_rescore_is_replanned(engine):
    """A person's change that reached the alert row but not the snapshot (a status written directly,
    not even bumping the version) moves the digest: the next full run plans the patient again."""
    factories.add_patients(engine, 40, seed=23)
    recompute(engine, full=True, now=NOW)
    pid = _patient_with_open_alerts(engine)
    with engine.begin() as conn:
        before = conn.execute(text("SELECT open_alerts FROM risk_snapshot WHERE patient_id = :p"), {"p": pid}).scalar()
        alert_id = conn.execute(
            text("SELECT MIN(id) FROM alert WHERE patient_id = :p AND status = 'open'"), {"p": pid}
        ).scalar()
        conn.execute(text("UPDATE alert SET status = 'dismissed' WHERE id = :i"), {"i": alert_id})
    rerun = recompute(engine, full=True, now=NOW + timedelta(minutes=5))
    with engine.connect() as conn:
        after = conn.execute(text("SELECT open_alerts FROM risk_snapshot WHERE patient_id = :p"), {"p": pid}).scalar()
        status = conn.execute(text("SELECT status FROM alert WHERE id = :i"), {"i": alert_id}).scalar()
    assert rerun.planned == 1
    assert status == "dismissed" and after == before - 1  # not reopened, and no longer counted open


def test_a_changed_fact_rewrites_that_patient_alone(engine):
    from db import models as m
    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    factories.add_patients(engine, 30, seed=24)
    recompute(engine, full=True, now=NOW)
    before = _snapshots(engine)
    with engine.connect() as conn:
        pid = conn.execute(
            text("SELECT patient_id FROM patient_state WHERE ecog IS NOT NULL AND ecog < 3 ORDER BY patient_id LIMIT 1")
        ).scalar_one()
    with write_session(engine) as session:  # ECOG 4 today: the prognostic scores move
        session.add(m.PerformanceStatus(patient_id=pid, recorded_on=date(2026, 11, 27), ecog=4))
        session.flush()
        refresh_patient_state(session, [pid])
    rerun = recompute(engine, full=True, now=NOW + timedelta(minutes=5))
    after = _snapshots(engine)
    assert rerun.snapshots_written == 1 and rerun.planned <= 1
    assert after[pid] != before[pid]
    assert {k: v for k, v in after.items() if k != pid} == {k: v for k, v in before.items() if k != pid}


def test_patients_an_incremental_run_wrote_are_planned_by_the_next_full_run_only(engine):
    """An incremental run leaves its patients' alert fingerprint and digest unknown (it does not
    read the digest back); the next full run plans exactly those patients, and the one after it nobody."""
    from db import models as m
    from db.engine import write_session
    from surveillance.state import refresh_patient_state

    factories.add_patients(engine, 30, seed=27)
    recompute(engine, full=True, now=NOW)
    with engine.connect() as conn:
        pids = [
            r[0]
            for r in conn.execute(text("SELECT patient_id FROM patient_state ORDER BY patient_id LIMIT 2"))
        ]
    with write_session(engine) as session:
        for pid in pids:
            session.add(m.PerformanceStatus(patient_id=pid, recorded_on=date(2026, 11, 27), ecog=3))
            session.add(m.RecomputeQueue(patient_id=pid))
        session.flush()
        refresh_patient_state(session, pids)
    incremental = recompute(engine, full=False, now=NOW + timedelta(minutes=1))
    assert incremental.patients == 2
    after_incremental, alerts = _snapshots(engine), _alerts(engine)
    with engine.connect() as conn:
        unknown = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT patient_id FROM risk_snapshot WHERE alert_digest IS NULL OR alert_fingerprint IS NULL "
                    "ORDER BY patient_id"
                )
            )
        ]
    assert unknown == pids
    replan = recompute(engine, full=True, now=NOW + timedelta(minutes=2))
    assert replan.planned == 2
    # Planning them again changed nothing the incremental run had written (it planned them in full).
    assert (replan.alerts_opened, replan.alerts_resolved) == (0, 0)
    assert _alerts(engine) == alerts and _snapshots(engine) == after_incremental
    assert recompute(engine, full=True, now=NOW + timedelta(minutes=3)).planned == 0


def test_a_snooze_that_ends_reopens_the_alert_in_a_full_run(engine):
    factories.add_patients(engine, 40, seed=25)
    recompute(engine, full=True, now=NOW)
    pid = _patient_with_open_alerts(engine)
    with engine.begin() as conn:
        alert_id = conn.execute(
            text("SELECT MIN(id) FROM alert WHERE patient_id = :p AND status = 'open'"), {"p": pid}
        ).scalar()
        conn.execute(
            text(
                "UPDATE alert SET status = 'snoozed', snoozed_until = :u, snooze_reason = 'MRI booked', "
                "version = version + 1 WHERE id = :i"
            ),
            {"u": NOW + timedelta(hours=3), "i": alert_id},
        )
    recompute(engine, full=True, now=NOW + timedelta(hours=1))  # re-planned (digest moved): stays snoozed
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM alert WHERE id = :i"), {"i": alert_id}).scalar() == "snoozed"
        reader = DbapiReader(conn)
        assert clock_due(reader, Selection(ids=(pid,)), NOW + timedelta(hours=2)) == set()
        assert clock_due(reader, Selection(ids=(pid,)), NOW + timedelta(hours=4)) == {pid}
    # Nothing else changed: the firings and alert rows are as stored; only the clock makes this a plan.
    run = recompute(engine, full=True, now=NOW + timedelta(hours=4))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT status FROM alert WHERE id = :i"), {"i": alert_id}).scalar() == "open"
    assert run.planned == 1


def test_an_escalation_falling_due_wakes_its_patient_and_an_alert_without_one_never_does(engine):
    """Both wake-up queries read ``ix_alert_escalation_due``, which holds only alerts that have an escalation time."""
    factories.add_patients(engine, 40, seed=26)
    recompute(engine, full=True, now=NOW)
    with engine.connect() as conn:
        first, second, third = [
            r[0]
            for r in conn.execute(
                text("SELECT DISTINCT patient_id FROM alert WHERE status = 'open' ORDER BY patient_id LIMIT 3")
            )
        ]
    with engine.begin() as conn:
        conn.execute(text("UPDATE alert SET escalate_at = NULL, escalated_at = NULL WHERE status = 'open'"))
        # One escalation due in 2 hours, one already stamped as escalated: only the first can fall due.
        for pid, escalated in ((first, None), (second, NOW)):
            conn.execute(
                text(
                    "UPDATE alert SET escalate_at = :at, escalated_at = :done, version = version + 1 "
                    "WHERE id = (SELECT MIN(id) FROM alert WHERE patient_id = :p AND status = 'open')"
                ),
                {"at": NOW + timedelta(hours=2), "done": escalated, "p": pid},
            )
    everyone = (first, second, third)
    with engine.connect() as conn:
        reader = DbapiReader(conn)
        assert clock_due(reader, Selection(ids=everyone), NOW + timedelta(hours=1)) == set()
        assert clock_due(reader, Selection(ids=everyone), NOW + timedelta(hours=3)) == {first}
        reader.end()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM recompute_queue"))
    assert incremental_ids(engine, NOW + timedelta(hours=1), NOW.date())[0] == []
    assert incremental_ids(engine, NOW + timedelta(hours=3), NOW.date())[0] == [first]


def test_active_alerts_of_rules_no_longer_in_the_set_are_resolved_and_firings_keep_theirs(engine):
    """The plan joins firings to active alerts on (patient, rule); rules outside the set share one key slot."""
    factories.add_patients(engine, 40, seed=27)
    recompute(engine, full=True, now=NOW)
    pid = _patient_with_open_alerts(engine)
    with engine.begin() as conn:
        kept, first = [
            r[0]
            for r in conn.execute(
                text("SELECT id FROM alert WHERE patient_id = :p AND status = 'open' ORDER BY id LIMIT 2"),
                {"p": pid},
            )
        ]
        # Two retired rules of the same patient: neither may shadow the other or a firing rule.
        conn.execute(
            text("UPDATE alert SET rule_id = 'retired-a', version = version + 1 WHERE id = :i"), {"i": first}
        )
        conn.execute(
            text(
                "INSERT INTO alert (patient_id, rule_id, rule_version, severity, status, title, evidence, "
                "evidence_key, source, opened_at, version) SELECT patient_id, 'retired-b', rule_version, severity, "
                "'open', title, evidence, evidence_key, source, opened_at, 1 FROM alert WHERE id = :i"
            ),
            {"i": first},
        )
    recompute(engine, full=True, now=NOW + timedelta(hours=1))
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                text("SELECT rule_id, status FROM alert WHERE patient_id = :p AND rule_id LIKE 'retired-%'"),
                {"p": pid},
            ).all()
        )
        kept_status = conn.execute(text("SELECT status FROM alert WHERE id = :i"), {"i": kept}).scalar()
    assert rows == {"retired-a": "resolved", "retired-b": "resolved"}
    assert kept_status == "open"


def test_pair_keys_keep_every_rule_apart_and_retired_rules_apart_from_them():
    pids = np.repeat(np.array([1, 2, 10**9], dtype=np.int64), len(RULE_ORDER))
    rules = np.array(RULE_ORDER * 3, dtype=object)
    keys = set(_pair_keys(pids, rules).tolist())
    assert len(keys) == len(pids)
    retired = _pair_keys(np.array([1, 2, 10**9]), np.array(["retired-a", "retired-b", "retired-c"], dtype=object))
    assert not keys & set(retired.tolist())


def test_every_kind_of_alert_change_moves_the_digest(engine):
    factories.add_patients(engine, 20, seed=26)
    recompute(engine, full=True, now=NOW)
    pid = _patient_with_open_alerts(engine)
    sel = Selection(ids=(pid,))

    def digest() -> str:
        with engine.connect() as conn:
            return alert_digests(DbapiReader(conn), sel).get(pid, NO_ALERTS)

    seen = [digest()]
    with engine.begin() as conn:
        alert_id = conn.execute(
            text("SELECT MIN(id) FROM alert WHERE patient_id = :p AND status = 'open'"), {"p": pid}
        ).scalar()
    changes = [
        "UPDATE alert SET severity = 'urgent', version = version + 1 WHERE id = :i",  # a version bump
        "UPDATE alert SET status = 'acknowledged' WHERE id = :i",  # a status without one
        "UPDATE alert SET status = 'done', closed_by = 'nurse1' WHERE id = :i",
        "UPDATE alert SET status = 'resolved' WHERE id = :i",  # leaves the rows a plan reads
    ]
    for change in changes:
        with engine.begin() as conn:
            conn.execute(text(change), {"i": alert_id})
        seen.append(digest())
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alert (patient_id, rule_id, rule_version, severity, status, title, evidence, evidence_key, "
                "source, opened_at, version) VALUES (:p, 'ecog-decline', '1', 'routine', 'open', 't', '{}', 'x', 's', :n, 1)"
            ),
            {"p": pid, "n": NOW},
        )
    seen.append(digest())
    assert len(set(seen)) == len(seen), seen
    assert digest() == seen[-1]  # and reading it again, unchanged, gives the same digest


def test_value_hashes_follow_values_not_dtypes():
    assert (_value_hashes(np.array([1, 2, 3])) == _value_hashes(np.array([1.0, 2.0, 3.0]))).all()
    assert (_value_hashes(np.array([np.nan, 0.0])) == _value_hashes(np.array([np.nan, -0.0]))).all()
    days = np.array(["2026-11-27", "NaT"], dtype="datetime64[D]")
    assert _value_hashes(days)[0] != _value_hashes(np.array(["2026-11-28"], dtype="datetime64[D]"))[0]
    words = _value_hashes(np.array(["L1", "L2", None], dtype=object))
    assert len(set(words.tolist())) == 3
    assert (_value_hashes(np.array(["L1"], dtype=object)) == words[:1]).all()


def _arrow_columns(path: str, sql: str, kinds: list[str], queue) -> None:
    """In a child process with no sqlite3 connection to the file (one SQLite per process)."""
    from db.readers import ArrowReader

    reader = ArrowReader(path)
    try:
        queue.put(reader.columns(sql, kinds))
    finally:
        reader.close()


def test_the_arrow_reader_converts_every_kind_as_the_dbapi_reader_does(tmp_path):
    import adbc_driver_sqlite.dbapi as adbc

    path = tmp_path / "kinds.db"
    # Built through ADBC as well, in a child: this test process never opens the file with sqlite3.
    rows = [
        (1, 3, 2.5, 1, 0, "2026-11-27", "kidney", 9_007_199_254_740_993),
        (2, 4, None, None, 1, None, None, None),
        (3, 5, 7.0, 0, None, "2024-02-29 10:00:00", "lung", -1),
    ]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        pool.apply(_create, (str(path), rows))
    sql = "SELECT id, n, f, t, b, d, s, big FROM k ORDER BY id"
    kinds = ["int", "int", "float", "tri", "bool", "date", "str", "int?"]
    queue = ctx.Queue()
    child = ctx.Process(target=_arrow_columns, args=(str(path), sql, kinds, queue))
    child.start()
    arrow = queue.get(timeout=60)
    child.join(60)
    expected = [column_from_values(kind, [row[k] for row in rows]) for k, kind in enumerate(kinds)]
    for kind, got, want in zip(kinds, arrow, expected, strict=True):
        if kind == "float":
            np.testing.assert_array_equal(got, want)
        elif kind == "int?":
            assert got.mask.tolist() == want.mask.tolist() and got.data.tolist() == want.data.tolist()
            assert int(got.data[0]) == 9_007_199_254_740_993  # 64-bit exact, not through a float
        else:
            assert got.tolist() == want.tolist(), kind
    del adbc


def _create(path: str, rows: list[tuple]) -> None:
    import adbc_driver_sqlite.dbapi as adbc

    conn = adbc.connect(path)
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE k (id INTEGER PRIMARY KEY, n INTEGER, f REAL, t INTEGER, b INTEGER, d TEXT, s TEXT, big INTEGER)"
    )
    for row in rows:
        values = ", ".join("NULL" if v is None else repr(v) for v in row)
        cur.execute(f"INSERT INTO k VALUES ({values})")
    cur.close()
    conn.commit()
    conn.close()


def test_the_arrow_reader_refuses_a_process_that_has_sqlite3_open(tmp_path):
    from db.readers import open_arrow_reader

    url = f"sqlite:///{tmp_path / 'open.db'}"
    engine = get_engine(url)
    upgrade(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with pytest.raises(RuntimeError, match="one SQLite per process"):
        open_arrow_reader(url)


def test_the_worker_count_setting_is_validated(monkeypatch):
    from surveillance.pipeline import _worker_count

    monkeypatch.setenv("SURVEILLANCE_RECOMPUTE_WORKERS", "two")
    with pytest.raises(ValueError, match="whole number"):
        _worker_count(None, 10)
    monkeypatch.setenv("SURVEILLANCE_RECOMPUTE_WORKERS", "3")
    assert _worker_count(None, 10) == 3
    monkeypatch.delenv("SURVEILLANCE_RECOMPUTE_WORKERS")
    assert _worker_count(None, 10) == 0  # a small run is prepared in the writing process
    assert _worker_count(1, 10) == 1


def test_a_full_run_whose_workers_die_finishes_in_its_own_process(engine, monkeypatch, caplog):
    """A worker that cannot start or is killed (out of memory, say) must not lose the run."""
    from concurrent.futures.process import BrokenProcessPool

    from surveillance import workers

    factories.add_patients(engine, 50, seed=27)
    original = workers.PreparePool.prepared

    def dies_after_two(self, selections, **kwargs):
        for k, prepared in enumerate(original(self, selections, **kwargs)):
            if k == 2:
                raise BrokenProcessPool("a worker was killed")
            yield prepared

    monkeypatch.setattr(workers.PreparePool, "prepared", dies_after_two)
    with caplog.at_level("WARNING"):
        result = recompute(engine, full=True, now=NOW, batch_size=10, workers=2)
    assert result.status == "success" and result.patients == 50 and result.batches == 5
    assert "worker processes failed" in caplog.text and "remaining 3 batches" in caplog.text
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM risk_snapshot")).scalar() == 50
