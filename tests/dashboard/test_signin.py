"""The sign-in page: wrong credentials are refused and audited, right ones enter, demo mode lists the demo accounts.

Expectations come from the database (the audit trail, ``app_user``) and from
the requirement (one message for every failure, five failures lock the
account, passwords shown only for a fictional demo database).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from surveillance.demo import DEMO_USERS
from surveillance.sessions import MAX_FAILURES
from tests import factories
from tests.dashboard.conftest import login, new_app
from tests.dashboard.support import EN, audit_count, everything

pytestmark = pytest.mark.db


def _sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.text_input(key="login_user").input(username)
    at.text_input(key="login_password").input(password)
    submit = [b for b in at.button if b.proto.form_id == "login"]
    assert len(submit) == 1
    return submit[0].click().run()


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


@pytest.mark.parametrize("username", ["nurse1", "nobody-here"])
def test_wrong_credentials_are_refused_with_one_message_and_audited(app_db, username):
    engine = app_db["engine"]
    at = new_app().run()
    assert not at.exception, at.exception
    _sign_in(at, username, "not-the-password-42")
    assert not at.exception, at.exception
    # One message whether the user exists or not (no user enumeration), and still on the sign-in page.
    assert _errors(at) == [EN.t("login.failed")]
    assert "auth" not in at.session_state
    assert at.text_input(key="login_user") is not None
    assert not at.dataframe
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT outcome, detail FROM audit_event WHERE actor = :u AND action = 'login'"), {"u": username}
        ).all()
        failed = conn.execute(text("SELECT failed_logins FROM app_user WHERE username = :u"), {"u": username}).scalar()
        stored = conn.execute(text("SELECT actor, action, target, detail FROM audit_event")).all()
    assert [r.outcome for r in rows] == ["failure"]
    assert json.loads(rows[0].detail)["reason"] == ("wrong password" if username == "nurse1" else "unknown user")
    assert failed == (1 if username == "nurse1" else None)
    assert not any("not-the-password-42" in str(value) for row in stored for value in row), "passwords never audited"


def test_the_right_password_enters_the_roles_first_page(app_db):
    engine = app_db["engine"]
    at = new_app().run()
    _sign_in(at, "NURSE1 ", factories.PASSWORD)  # usernames are case- and space-insensitive
    assert not at.exception, at.exception
    assert not at.error
    assert at.session_state["auth"].username == "nurse1"
    assert [t.value for t in at.title] == [EN.t("caseload.title")]
    assert EN.t("app.signed_in_as", name="Nurse1", role=EN.t("role.nurse")) in [c.value for c in at.sidebar.caption]
    assert audit_count(engine, actor="nurse1", action="login", outcome="success") == 1
    assert audit_count(engine, actor="nurse1", action="login", outcome="failure") == 0


def test_repeated_failures_lock_the_account_even_for_the_right_password(app_db):
    engine = app_db["engine"]
    at = new_app().run()
    for _ in range(MAX_FAILURES):
        _sign_in(at, "doc1", "wrong-password")
        assert _errors(at) == [EN.t("login.failed")]
    _sign_in(at, "doc1", factories.PASSWORD)
    assert "auth" not in at.session_state
    errors = _errors(at)
    assert len(errors) == 1
    assert errors[0].startswith(EN.t("login.locked", until="\x00").split("\x00")[0]), errors
    with engine.connect() as conn:
        locked_until = conn.execute(text("SELECT locked_until FROM app_user WHERE username = 'doc1'")).scalar()
    assert locked_until is not None
    assert audit_count(engine, actor="doc1", action="login.lockout", outcome="failure") == 1
    assert audit_count(engine, actor="doc1", action="login", outcome="success") == 0


@pytest.mark.parametrize("flag", ["1", "0", None])
def test_demo_mode_lists_the_demo_accounts_and_only_then(app_db, flag):
    engine = app_db["engine"]
    if flag is not None:
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO app_setting (key, value, updated_at) VALUES ('demo_mode', :v, :t)"),
                {"v": flag, "t": datetime.now(timezone.utc)},
            )
    at = new_app().run()
    assert not at.exception, at.exception
    if flag == "1":
        assert len(at.table) == 1
        table = at.table[0].value
        assert list(zip(table["username"], table["password"], strict=True)) == [
            (u.username, u.password) for u in DEMO_USERS
        ]
        assert list(table["role"]) == [EN.t(f"role.{u.role}") for u in DEMO_USERS]
        assert EN.t("login.demo_accounts") in everything(at)
    else:
        assert not at.table
        shown = everything(at)
        assert EN.t("login.demo_accounts") not in shown
        assert not any(u.password in shown for u in DEMO_USERS)


@pytest.mark.parametrize("ending", ["timed_out", "expired", "changed"])
def test_an_ended_session_returns_to_sign_in_with_the_reason_and_is_audited(app_db, ending, monkeypatch):
    engine = app_db["engine"]
    at = login(new_app(), engine, "nurse1")
    if ending == "timed_out":
        at.session_state["auth"].last_seen -= timedelta(minutes=16)  # idle longer than the 15-minute default
    elif ending == "expired":
        # Active all along (never idle), but older than the absolute lifetime: zero hours here.
        monkeypatch.setenv("SESSION_ABSOLUTE_HOURS", "0")
    else:
        with engine.begin() as conn:
            conn.execute(text("UPDATE app_user SET active = :f WHERE username = 'nurse1'"), {"f": False})
    at.run()
    assert not at.exception, at.exception
    assert "auth" not in at.session_state
    assert [i.value for i in at.info] == [EN.t(f"login.{ending}")]
    assert at.text_input(key="login_user") is not None
    assert not at.dataframe, "no caseload after the session ended"
    with engine.connect() as conn:
        details = conn.execute(text("SELECT detail FROM audit_event WHERE actor = 'nurse1' AND action = 'logout'"))
        reasons = [json.loads(d)["reason"] for (d,) in details]
    assert reasons == [ending]


def test_passwords_never_reach_the_logs_the_audit_trail_or_the_console(app_db, caplog, capsys, monkeypatch):
    """A wrong and a right password at sign-in, and a new user's password on the command line."""
    import io
    import logging

    from surveillance import cli

    caplog.set_level(logging.DEBUG)
    engine = app_db["engine"]
    wrong, new = "Wr0ng-Xyzzy-secret-71", "N3w-Plugh-secret-93"
    right = factories.PASSWORD
    at = new_app().run()
    _sign_in(at, "nurse1", wrong)
    assert _errors(at) == [EN.t("login.failed")]
    at = _sign_in(new_app().run(), "nurse1", right)
    assert "auth" in at.session_state
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setattr("sys.stdin", io.StringIO(new + "\n"))
    assert cli.main(["users", "add", "nurse-new", "--role", "nurse", "--department", "oncology"]) == 0
    console = capsys.readouterr()
    with engine.connect() as conn:
        audit_text = " ".join(str(v) for row in conn.execute(text("SELECT * FROM audit_event")).all() for v in row)
        users = conn.execute(text("SELECT username, password_hash FROM app_user WHERE username = 'nurse-new'")).all()
    assert users and users[0][1].startswith("$argon2id$"), "the new password is stored only as an argon2id hash"
    assert "nurse-new" in audit_text and "login" in audit_text, "the events themselves were written"
    for secret in (wrong, right, new):
        assert secret not in caplog.text
        assert secret not in audit_text
        assert secret not in console.out + console.err
