"""Role × action, written out by hand from README "What it does" and surveillance/access.py's docstring.

Default deny: every action not listed for a role is refused, an action added to
``access.Action`` without a decision here fails this test, and a role missing
from the policy is refused everything.
"""

from __future__ import annotations

import pytest

from surveillance import access
from surveillance.access import Action, Identity, PermissionDenied, Role

A = Action
#: The product's policy (README "What it does"): nurse → her caseload; physician → the department and
#: the board; lead → aggregates only; admin → users, audit, health, imports — no clinical record.
EXPECTED: dict[Action, set[Role]] = {
    A.VIEW_CASELOAD: {Role.NURSE, Role.PHYSICIAN},
    A.VIEW_PATIENT: {Role.NURSE, Role.PHYSICIAN},
    A.RECORD_FACT: {Role.NURSE, Role.PHYSICIAN},
    A.WORK_ALERT: {Role.NURSE, Role.PHYSICIAN},
    A.VIEW_ALERTS: {Role.NURSE, Role.PHYSICIAN},
    A.VIEW_BOARD: {Role.PHYSICIAN},
    A.DECIDE_BOARD: {Role.PHYSICIAN},
    A.VIEW_TRENDS: {Role.LEAD},
    A.USE_CALCULATOR: {Role.NURSE, Role.PHYSICIAN, Role.LEAD, Role.ADMIN},
    A.VIEW_REFERENCE: {Role.NURSE, Role.PHYSICIAN, Role.LEAD, Role.ADMIN},
    A.VIEW_HEALTH: {Role.ADMIN},
    A.MANAGE_USERS: {Role.ADMIN},
    A.VIEW_AUDIT: {Role.ADMIN},
    A.EXPORT: {Role.NURSE, Role.PHYSICIAN},
    A.IMPORT: {Role.ADMIN},
}
CLINICAL = {A.VIEW_CASELOAD, A.VIEW_PATIENT, A.RECORD_FACT, A.WORK_ALERT, A.VIEW_ALERTS, A.VIEW_BOARD,
            A.DECIDE_BOARD, A.EXPORT}


def _who(role) -> Identity:
    return Identity(7, "someone", "Someone", role, "oncology")


def test_every_action_has_a_decision():
    assert set(EXPECTED) == set(Action), "an action was added without deciding who may do it"


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_role_action_matrix(role, action):
    who = _who(role)
    assert access.allowed(who, action) is (role in EXPECTED[action])
    if role in EXPECTED[action]:
        access.require(who, action)
    else:
        with pytest.raises(PermissionDenied, match=action.value.replace("_", " ")):
            access.require(who, action)


def test_leads_and_admins_have_no_clinical_action():
    for role in (Role.LEAD, Role.ADMIN):
        assert not {a for a in CLINICAL if access.allowed(_who(role), a)}, role


def test_a_role_missing_from_the_policy_is_refused_everything(monkeypatch):
    monkeypatch.setattr(access, "ALLOWED", {r: v for r, v in access.ALLOWED.items() if r != Role.NURSE})
    for action in Action:
        assert not access.allowed(_who(Role.NURSE), action)


@pytest.mark.parametrize("role", [Role.LEAD, Role.ADMIN])
def test_roles_without_records_have_an_empty_patient_scope(role):
    sql, params = access.patient_scope(_who(role))
    assert sql == "1 = 0" and params == {}
    assert not access.in_scope(_who(role), assigned_nurse_id=7, department="oncology")


def test_nurse_scope_is_her_assignment_and_physician_scope_her_department():
    nurse, doc = _who(Role.NURSE), _who(Role.PHYSICIAN)
    assert access.in_scope(nurse, assigned_nurse_id=7, department="other")
    assert not access.in_scope(nurse, assigned_nurse_id=8, department="oncology")
    assert not access.in_scope(nurse, assigned_nurse_id=None, department="oncology")
    assert access.in_scope(doc, assigned_nurse_id=None, department="oncology")
    assert not access.in_scope(doc, assigned_nurse_id=7, department="orthopaedics")


def test_a_physician_without_a_department_sees_no_patient_and_all_departments_is_explicit():
    """Default deny: a missing department must never widen access; "*" is the explicit centre-wide grant."""
    import dataclasses

    doc = _who(Role.PHYSICIAN)
    none = dataclasses.replace(doc, department=None)
    blank = dataclasses.replace(doc, department="")
    wide = dataclasses.replace(doc, department=access.ALL_DEPARTMENTS)
    for who in (none, blank):
        assert access.patient_scope(who) == ("1 = 0", {})
        assert not access.in_scope(who, assigned_nurse_id=None, department="oncology")
        assert not access.in_scope(who, assigned_nurse_id=None, department=None)
    assert access.patient_scope(wide) == ("1 = 1", {})
    assert access.in_scope(wide, assigned_nurse_id=None, department="orthopaedics")
    assert access.in_scope(wide, assigned_nurse_id=None, department=None)
