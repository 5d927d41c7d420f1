"""Sign-in, lockout and server-side session checks.

* Passwords are argon2id (:mod:`surveillance.auth`); an unknown username costs
  the same verification time as a wrong password.
* Five failures lock the account for 15 minutes; the counter and the lock live
  in the database, so restarting the app does not reset them.
* A session ends after ``SESSION_IDLE_MINUTES`` of inactivity (default 15) or
  ``SESSION_ABSOLUTE_HOURS`` after sign-in (default 12), checked on the server
  at every interaction; disabling a user or changing their role or department
  ends their session at their next interaction.
* Every sign-in, failure, lockout and sign-out is audited; passwords never are.
* A session record is sealed (HMAC-SHA256 with a key held only in this server
  process) when the password is verified; a record that was forged or altered
  in the session state (another user id, another role) fails the seal, is
  refused and audited (``session.forged``).  The identity a page acts as is
  re-read from ``app_user`` on every run (:func:`session_identity`), never taken
  from the session state.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine
from sqlmodel import select

from db.engine import read_session, write_session
from db.models import AppUser
from surveillance import audit
from surveillance.access import Identity, Role
from surveillance.auth import hash_password, needs_rehash, verify_password

MAX_FAILURES = 5
#: Seals session records; per process, so a record is valid only in the process that signed it in.
_SEAL_KEY = secrets.token_bytes(32)
LOCKOUT = timedelta(minutes=15)


class SessionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SESSION_", extra="ignore")

    idle_minutes: int = 15
    absolute_hours: int = 12


class LoginFailed(Exception):
    """Wrong username or password, disabled account: one message for all (no user enumeration)."""


class AccountLocked(LoginFailed):
    def __init__(self, until: datetime):
        self.until = until
        super().__init__(f"locked until {until.isoformat()}")


@dataclass
class SessionRecord:
    user_id: int
    username: str
    role: str
    department: str | None
    display_name: str
    login_at: datetime
    last_seen: datetime
    seal: str = ""

    def identity(self) -> Identity:
        return Identity(self.user_id, self.username, self.display_name, Role(self.role), self.department)

    def _expected_seal(self) -> str:
        message = f"{self.user_id}|{self.username}|{self.role}|{self.department}|{self.login_at.isoformat()}"
        return hmac.new(_SEAL_KEY, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def sealed(self) -> bool:
        """Whether this record is the one :func:`authenticate` issued, unaltered."""
        try:
            return hmac.compare_digest(self.seal, self._expected_seal())
        except (TypeError, AttributeError):
            return False


def _aware(value: datetime | None) -> datetime | None:
    from datetime import timezone

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)


def authenticate(engine: Engine, username: str, password: str, *, now: datetime) -> SessionRecord:
    username = (username or "").strip().lower()
    with write_session(engine) as session:
        outcome = _attempt(session, username, password, now)
    # Raised only after the transaction committed: a failure's audit event, count and lock must be kept.
    if isinstance(outcome, LoginFailed):
        raise outcome
    return outcome


def _attempt(session, username: str, password: str, now: datetime) -> SessionRecord | LoginFailed:
    user = session.exec(select(AppUser).where(AppUser.username == username)).first()
    if user is None:
        verify_password(None, password)  # same cost as a real check
        audit.record(session, actor=username or "(blank)", action="login", outcome="failure",
                     detail={"reason": "unknown user"}, now=now)
        return LoginFailed("unknown user")
    locked_until = _aware(user.locked_until)
    if locked_until is not None and locked_until > now:
        audit.record(session, actor=username, action="login", outcome="failure", detail={"reason": "locked"}, now=now)
        return AccountLocked(locked_until)
    if not verify_password(user.password_hash, password) or not user.active:
        user.failed_logins += 1
        reason = "disabled" if not user.active else "wrong password"
        if user.failed_logins >= MAX_FAILURES:
            user.locked_until = now + LOCKOUT
            user.failed_logins = 0
            audit.record(session, actor=username, action="login.lockout", outcome="failure",
                         detail={"until": user.locked_until.isoformat()}, now=now)
        audit.record(session, actor=username, action="login", outcome="failure", detail={"reason": reason}, now=now)
        return LoginFailed(reason)
    user.failed_logins = 0
    user.locked_until = None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    audit.record(session, actor=username, action="login", now=now)
    record = SessionRecord(user.id, user.username, user.role, user.department, user.display_name, now, now)
    record.seal = record._expected_seal()
    return record


def check_session(
    engine: Engine, record: SessionRecord, *, now: datetime, settings: SessionSettings | None = None
) -> str | None:
    """``None`` when the session may continue, else why it ended ("forged", "timed_out", "expired", "changed")."""
    settings = settings or SessionSettings()
    if not isinstance(record, SessionRecord) or not record.sealed():
        refuse_forged(engine, record, now=now)
        return "forged"
    if now - record.last_seen > timedelta(minutes=settings.idle_minutes):
        return "timed_out"
    if now - record.login_at > timedelta(hours=settings.absolute_hours):
        return "expired"
    with read_session(engine) as session:
        user = session.get(AppUser, record.user_id)
    if (user is None or not user.active or user.username != record.username or user.role != record.role
            or user.department != record.department):
        return "changed"
    record.last_seen = now
    return None


def refuse_forged(engine: Engine, record: object, *, now: datetime) -> None:
    """Audit a session record that does not carry a valid seal (or is not a record at all)."""
    claimed = getattr(record, "username", None)
    with write_session(engine) as session:
        audit.record(session, actor=str(claimed or "(no session)")[:64], action="session.forged", outcome="denied",
                     detail={"claimed_user_id": str(getattr(record, "user_id", None))[:32],
                             "claimed_role": str(getattr(record, "role", None))[:32]}, now=now)


def session_identity(engine: Engine, record: object) -> Identity | None:
    """The identity a page acts as: re-read from ``app_user`` for a sealed record whose user is still as signed in.

    ``None`` for anything else (no record, a forged or altered record, a user
    since disabled or changed); the caller refuses.  Name, role and department
    come from the database row, not from the session state.
    """
    if not isinstance(record, SessionRecord) or not record.sealed():
        return None
    with read_session(engine) as session:
        user = session.get(AppUser, record.user_id)
    if (user is None or not user.active or user.username != record.username or user.role != record.role
            or user.department != record.department):
        return None
    return Identity(user.id, user.username, user.display_name, Role(user.role), user.department)


def end_session(engine: Engine, record: SessionRecord, *, reason: str, now: datetime) -> None:
    with write_session(engine) as session:
        audit.record(session, actor=record.username, action="logout", detail={"reason": reason}, now=now)
