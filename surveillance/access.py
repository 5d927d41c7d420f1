"""Who may do what: roles, patient scope and the action matrix, enforced below the UI.

* **nurse** — the patients assigned to her; records facts and works alerts on them.
* **physician** — the patients of her department; records facts, works alerts,
  records board decisions.  A physician with no department sees no patient
  (default deny); a centre-wide physician is given the department
  :data:`ALL_DEPARTMENTS` (``*``) explicitly.
* **lead** — aggregates only (trends), no identifiers, no patient records.
* **admin** — users, rules, audit and scheduler health; no clinical edits and
  no patient records.  Admins may *import* files (``Action.IMPORT``): loading a
  FHIR/CSV extract from another system is data integration, like a backup
  restore — it writes what the source system recorded, validated, whole or not
  at all, audited as ``import.file`` with the file's SHA-256 — not a clinical
  judgement of the admin's; the report names entries, resource ids, MRNs and
  codes, not the clinical record.

Default deny: an action missing from :data:`ALLOWED` is refused.  Every data
function of ``dashboard.data`` and every writer of ``surveillance.service``
checks here, so a page that forgets a check (or a forged query parameter)
still cannot reach data the role may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

#: The department value that gives a physician every department's patients: an explicit grant,
#: so a missing department can never widen access.
ALL_DEPARTMENTS = "*"


class Role(StrEnum):
    NURSE = "nurse"
    PHYSICIAN = "physician"
    LEAD = "lead"
    ADMIN = "admin"


class Action(StrEnum):
    VIEW_CASELOAD = "view_caseload"
    VIEW_PATIENT = "view_patient"
    RECORD_FACT = "record_fact"
    WORK_ALERT = "work_alert"
    VIEW_ALERTS = "view_alerts"
    VIEW_BOARD = "view_board"
    DECIDE_BOARD = "decide_board"
    VIEW_TRENDS = "view_trends"
    USE_CALCULATOR = "use_calculator"
    VIEW_REFERENCE = "view_reference"
    VIEW_HEALTH = "view_health"
    MANAGE_USERS = "manage_users"
    VIEW_AUDIT = "view_audit"
    EXPORT = "export"
    IMPORT = "import"


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.NURSE: frozenset(
        {
            Action.VIEW_CASELOAD,
            Action.VIEW_PATIENT,
            Action.RECORD_FACT,
            Action.WORK_ALERT,
            Action.VIEW_ALERTS,
            Action.USE_CALCULATOR,
            Action.VIEW_REFERENCE,
            Action.EXPORT,
        }
    ),
    Role.PHYSICIAN: frozenset(
        {
            Action.VIEW_CASELOAD,
            Action.VIEW_PATIENT,
            Action.RECORD_FACT,
            Action.WORK_ALERT,
            Action.VIEW_ALERTS,
            Action.VIEW_BOARD,
            Action.DECIDE_BOARD,
            Action.USE_CALCULATOR,
            Action.VIEW_REFERENCE,
            Action.EXPORT,
        }
    ),
    Role.LEAD: frozenset({Action.VIEW_TRENDS, Action.USE_CALCULATOR, Action.VIEW_REFERENCE}),
    Role.ADMIN: frozenset(
        {
            Action.VIEW_HEALTH,
            Action.MANAGE_USERS,
            Action.VIEW_AUDIT,
            Action.IMPORT,
            Action.VIEW_REFERENCE,
            Action.USE_CALCULATOR,
        }
    ),
}


class PermissionDenied(PermissionError):
    """The identity may not do this; the message says what and why (no data leaks)."""


@dataclass(frozen=True)
class Identity:
    user_id: int
    username: str
    display_name: str
    role: Role
    department: str | None = None

    @property
    def actor(self) -> str:
        return self.username


SYSTEM = Identity(0, "system:pipeline", "Recompute pipeline", Role.ADMIN)


def allowed(identity: Identity, action: Action) -> bool:
    return action in ALLOWED.get(identity.role, frozenset())


def require(identity: Identity, action: Action) -> None:
    if not allowed(identity, action):
        raise PermissionDenied(f"role {identity.role} may not {action.value.replace('_', ' ')}")


def patient_scope(identity: Identity) -> tuple[str, dict]:
    """A SQL condition on ``patient`` (alias ``p``) limiting rows to the identity's patients."""
    if identity.role == Role.NURSE:
        return "p.assigned_nurse_id = :scope_user", {"scope_user": identity.user_id}
    if identity.role == Role.PHYSICIAN:
        if identity.department == ALL_DEPARTMENTS:
            return "1 = 1", {}
        if identity.department:
            return "p.department = :scope_department", {"scope_department": identity.department}
    return "1 = 0", {}


def in_scope(identity: Identity, *, assigned_nurse_id: int | None, department: str | None) -> bool:
    if identity.role == Role.NURSE:
        return assigned_nurse_id == identity.user_id
    if identity.role == Role.PHYSICIAN:
        if identity.department == ALL_DEPARTMENTS:
            return True
        return bool(identity.department) and department == identity.department
    return False
