"""User administration: create, disable and change roles, each audited.

Used by ``python -m surveillance users …`` and the admin page.  Passwords are
hashed with argon2id (:mod:`surveillance.auth`) and never logged.
"""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy.engine import Engine
from sqlmodel import select

from db.engine import read_session, write_session
from db.models import AppUser
from surveillance import audit
from surveillance.access import Role
from surveillance.auth import MIN_PASSWORD_LENGTH, hash_password
from surveillance.service import ConflictError, NotFound, ValidationError

USERNAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{1,63}$")


def add_user(
    engine: Engine,
    *,
    actor: str,
    username: str,
    role: str,
    password: str,
    display_name: str | None = None,
    department: str | None = None,
    now: datetime,
) -> int:
    if not USERNAME_RE.match(username or ""):
        raise ValidationError(
            "username", "2–64 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter"
        )
    if role not in {r.value for r in Role}:
        raise ValidationError("role", f"{role!r} is not a role; allowed: " + ", ".join(r.value for r in Role))
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise ValidationError("password", f"must have at least {MIN_PASSWORD_LENGTH} characters")
    # The column widths of app_user (db/models.py): longer values are refused here, not by the database.
    if display_name is not None and len(display_name) > 128:
        raise ValidationError("display_name", "is longer than 128 characters")
    if department is not None and len(department) > 64:
        raise ValidationError("department", "is longer than 64 characters")
    with write_session(engine) as session:
        if session.exec(select(AppUser.id).where(AppUser.username == username)).first() is not None:
            raise ConflictError(f"user {username} already exists")
        user = AppUser(
            username=username,
            display_name=display_name or username,
            role=role,
            department=department,
            password_hash=hash_password(password),
            created_at=now,
            password_changed_at=now,
        )
        session.add(user)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="user.add",
            target=f"user:{username}",
            detail={"role": role, "department": department},
            now=now,
        )
        return int(user.id)


def set_active(engine: Engine, *, actor: str, username: str, active: bool, now: datetime) -> None:
    with write_session(engine) as session:
        user = session.exec(select(AppUser).where(AppUser.username == username)).first()
        if user is None:
            raise NotFound(f"user {username} does not exist")
        user.active = active
        user.version += 1
        audit.record(
            session, actor=actor, action="user.enable" if active else "user.disable", target=f"user:{username}", now=now
        )


def set_role(engine: Engine, *, actor: str, username: str, role: str, now: datetime) -> None:
    if role not in {r.value for r in Role}:
        raise ValidationError("role", f"{role!r} is not a role; allowed: " + ", ".join(r.value for r in Role))
    with write_session(engine) as session:
        user = session.exec(select(AppUser).where(AppUser.username == username)).first()
        if user is None:
            raise NotFound(f"user {username} does not exist")
        previous = user.role
        user.role = role
        user.version += 1
        audit.record(
            session,
            actor=actor,
            action="user.set_role",
            target=f"user:{username}",
            detail={"from": previous, "to": role},
            now=now,
        )


def list_users(engine: Engine) -> list[AppUser]:
    with read_session(engine) as session:
        return list(session.exec(select(AppUser).order_by(AppUser.username)))
