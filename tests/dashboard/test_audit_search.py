"""A patient search is audited once, with the ids of the patients it listed and never the query (a name is PHI)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import bindparam, text

from tests.dashboard.conftest import login, new_app, page

pytestmark = pytest.mark.db


def _searches(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(text("SELECT actor, patient_id, outcome, detail FROM audit_event "
                                 "WHERE action = 'search.patient' ORDER BY id")).all()


def test_a_search_is_audited_once_with_the_listed_patient_ids(app_db):
    engine = app_db["engine"]
    at = login(new_app(), engine, "nurse1")
    page(at, "patient")
    at.text_input(key="patient_search").set_value("family1").run()
    assert not at.exception, at.exception
    mrns = [option.split(" · ")[0] for option in at.selectbox(key="patient_search_pick").options]
    assert len(mrns) >= 2
    with engine.connect() as conn:  # the patients shown, by their MRN; all of them nurse1's own
        rows = conn.execute(text("SELECT id, assigned_nurse_id FROM patient WHERE mrn IN :mrns").bindparams(
            bindparam("mrns", expanding=True)), {"mrns": mrns}).all()
    listed = sorted(r.id for r in rows)
    assert len(listed) == len(mrns)
    assert {r.assigned_nurse_id for r in rows} == {app_db["users"]["nurse1"]}
    at.run()  # a rerun is not another search
    at.run()
    events = _searches(engine)
    assert len(events) == 1
    assert (events[0].actor, events[0].patient_id, events[0].outcome) == ("nurse1", None, "success")
    detail = json.loads(events[0].detail)
    assert detail["patient_ids"] == listed and detail["results"] == len(listed)
    assert "family1" not in events[0].detail.lower()

    at.text_input(key="patient_search").set_value("no such patient zzz").run()
    assert not at.exception, at.exception
    events = _searches(engine)
    assert len(events) == 2 and json.loads(events[1].detail) == {"results": 0, "patient_ids": []}
