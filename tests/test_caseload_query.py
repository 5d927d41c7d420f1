"""The caseload query (db/queries.py) against a plain reading of the same store, on both backends.

The query walks a priority index or is driven by a rare alert type or primary site, and may skip
patients on the open-rule bits of their snapshot; whichever way it goes, it must return exactly the
active patients with open alerts that pass every filter, highest priority first, then by id.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from db import queries
from surveillance.pipeline import recompute
from surveillance.prepare import OPEN_RULES_ORDER_KEY, open_rule_mask
from surveillance.rules.engine import RULE_ORDER
from tests import factories

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _expected(conn, *, nurse_id=None, tier=None, primary_site=None, rule_id=None, limit=200, offset=0) -> list[int]:
    """Every snapshot read into Python, filtered and sorted there."""
    snapshots = conn.execute(
        text("SELECT patient_id, priority, active, open_alerts, assigned_nurse_id, tier, primary_site FROM risk_snapshot")
    ).all()
    with_rule = None
    if rule_id:
        with_rule = {
            r[0]
            for r in conn.execute(
                text("SELECT patient_id FROM alert WHERE rule_id = :r AND status = 'open'"), {"r": rule_id}
            )
        }
    rows = [
        s
        for s in snapshots
        if s.active
        and s.open_alerts > 0
        and (nurse_id is None or s.assigned_nurse_id == nurse_id)
        and (tier is None or s.tier == tier)
        and (primary_site is None or s.primary_site == primary_site)
        and (with_rule is None or s.patient_id in with_rule)
    ]
    rows.sort(key=lambda s: (-s.priority, s.patient_id))
    return [s.patient_id for s in rows[offset : offset + limit]]


@pytest.fixture
def store(engine):
    users = factories.add_users(engine)
    factories.add_patients(engine, 160, seed=41, nurse_ids=[users["nurse1"], users["nurse2"]])
    recompute(engine, full=True, now=NOW)
    return engine


def _filters(conn) -> list[dict]:
    """Filters from the store itself: each nurse, tier, the commonest and rarest site and alert type, and mixes."""
    nurses = [r[0] for r in conn.execute(text("SELECT DISTINCT assigned_nurse_id FROM risk_snapshot ORDER BY 1")) if r[0]]
    tiers = [r[0] for r in conn.execute(text("SELECT DISTINCT tier FROM risk_snapshot ORDER BY 1"))]
    sites = [
        r[0]
        for r in conn.execute(
            text("SELECT primary_site FROM risk_snapshot GROUP BY primary_site ORDER BY COUNT(*) DESC, primary_site")
        )
    ]
    rules = [
        r[0]
        for r in conn.execute(
            text("SELECT rule_id FROM alert WHERE status = 'open' GROUP BY rule_id ORDER BY COUNT(*) DESC, rule_id")
        )
    ]
    assert len(nurses) == 2 and len(tiers) >= 3 and len(sites) >= 4 and len(rules) >= 6
    picks = {
        "nurse_id": nurses,
        "tier": tiers,
        "primary_site": [sites[0], sites[-1]],
        "rule_id": [rules[0], rules[len(rules) // 2], rules[-1], "a-rule-nobody-has"],
    }
    filters = [{}]
    filters += [{key: value} for key, values in picks.items() for value in values]
    filters += [{"primary_site": s, "rule_id": r} for s in picks["primary_site"] for r in picks["rule_id"]]
    filters += [{"tier": t, "rule_id": r} for t in tiers for r in picks["rule_id"][:3]]
    filters += [
        {"nurse_id": n, "tier": t, "primary_site": sites[0], "rule_id": rules[0]} for n in nurses for t in tiers
    ]
    return filters


@pytest.mark.parametrize("drive_limit", [0, 4000, 10**9], ids=["always-walk", "default", "always-drive"])
def test_the_caseload_returns_what_a_plain_reading_of_the_store_returns(store, monkeypatch, drive_limit):
    monkeypatch.setattr(queries, "DRIVE_LIMIT", drive_limit)
    with store.connect() as conn:
        filters = _filters(conn)
        for f in filters:
            for limit, offset in ((200, 0), (7, 0), (5, 3)):
                expected = _expected(conn, limit=limit, offset=offset, **f)
                for mask in (None, open_rule_mask(conn, f.get("rule_id"))):
                    got = [
                        r["patient_id"]
                        for r in queries.caseload(conn, open_rule_mask=mask, limit=limit, offset=offset, **f)
                    ]
                    assert got == expected, (f, limit, offset, mask)
        # The store gives the filters something to find: mixes of a site and an alert type match someone.
        assert any(_expected(conn, **f) for f in filters if "rule_id" in f and "primary_site" in f)


def test_each_strategy_is_taken_when_its_filter_is_the_rarer(store, monkeypatch):
    monkeypatch.setattr(queries, "DRIVE_LIMIT", 10**9)
    with store.connect() as conn:
        rare_rule = conn.execute(
            text("SELECT rule_id FROM alert WHERE status = 'open' GROUP BY rule_id ORDER BY COUNT(*), rule_id LIMIT 1")
        ).scalar()
        common_site = conn.execute(
            text("SELECT primary_site FROM risk_snapshot GROUP BY primary_site ORDER BY COUNT(*) DESC LIMIT 1")
        ).scalar()
        assert queries.caseload_driver(conn, primary_site=common_site, rule_id=rare_rule) == "rule"
        assert queries.caseload_driver(conn, primary_site=common_site, rule_id=None) == "site"
        monkeypatch.setattr(queries, "DRIVE_LIMIT", 0)
        assert queries.caseload_driver(conn, primary_site=common_site, rule_id=rare_rule) is None


def test_the_open_rule_bits_are_used_only_when_a_full_run_of_this_rule_order_wrote_them(store):
    rule = RULE_ORDER[3]
    with store.connect() as conn:
        assert open_rule_mask(conn, rule) == 1 << 3
        assert open_rule_mask(conn, "a-rule-nobody-has") is None
        assert open_rule_mask(conn, None) is None
    with store.begin() as conn:
        conn.execute(
            text("UPDATE app_setting SET value = :v WHERE key = :k"),
            {"v": ",".join(reversed(RULE_ORDER)), "k": OPEN_RULES_ORDER_KEY},
        )
    with store.connect() as conn:
        assert open_rule_mask(conn, rule) is None  # masks from another rule order: not trusted
    recompute(store, full=True, now=NOW)
    with store.connect() as conn:
        assert open_rule_mask(conn, rule) == 1 << 3


def test_the_walk_skips_patients_on_their_open_rule_bits_and_still_checks_the_alert(store, monkeypatch):
    monkeypatch.setattr(queries, "DRIVE_LIMIT", 0)  # walk: the alert type does not drive
    with store.connect() as conn:
        rule = conn.execute(
            text("SELECT rule_id FROM alert WHERE status = 'open' GROUP BY rule_id ORDER BY COUNT(*) DESC LIMIT 1")
        ).scalar()
        mask = open_rule_mask(conn, rule)
        expected = _expected(conn, rule_id=rule)
        assert expected and mask
    with store.begin() as conn:
        # A person acknowledged one of these alerts: its bit stays set until the next plan.
        conn.execute(
            text(
                "UPDATE alert SET status = 'acknowledged', version = version + 1 "
                "WHERE patient_id = :p AND rule_id = :r AND status = 'open'"
            ),
            {"p": expected[0], "r": rule},
        )
    with store.connect() as conn:
        got = [r["patient_id"] for r in queries.caseload(conn, rule_id=rule, open_rule_mask=mask)]
        assert got == expected[1:] == _expected(conn, rule_id=rule)
    with store.begin() as conn:
        # Bits cleared behind the plan's back: the walk trusts them, so these patients drop out.
        conn.execute(text("UPDATE risk_snapshot SET open_rules = 0"))
    with store.connect() as conn:
        assert queries.caseload(conn, rule_id=rule, open_rule_mask=mask) == []
        assert [r["patient_id"] for r in queries.caseload(conn, rule_id=rule)] == expected[1:]
