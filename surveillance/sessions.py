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
"""

from __future__ import annotations

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

    def identity(self) -> Identity:
        return Identity(self.user_id, self.username, self.display_name, Role(self.role), self.department)


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
    return SessionRecord(user.id, user.username, user.role, user.department, user.display_name, now, now)


def check_session(engine: Engine, record: SessionRecord, *, now: datetime,
                  settings: SessionSettings | None = None) -> str | None:
    """``None`` when the session may continue, else why it ended ("timed_out", "expired", "changed")."""
    settings = settings or SessionSettings()
    if now - record.last_seen > timedelta(minutes=settings.idle_minutes):
        return "timed_out"
    if now - record.login_at > timedelta(hours=settings.absolute_hours):
        return "expired"
    with read_session(engine) as session:
        user = session.get(AppUser, record.user_id)
    if user is None or not user.active or user.role != record.role or user.department != record.department:
        return "changed"
    record.last_seen = now
    return None


def end_session(engine: Engine, record: SessionRecord, *, reason: str, now: datetime) -> None:
    with write_session(engine) as session:
        audit.record(session, actor=record.username, action="logout", detail={"reason": reason}, now=now)
