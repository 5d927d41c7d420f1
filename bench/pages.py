"""Page timings: ``python -m bench.pages --database-url URL [--json]``.

For every page of every role, in one process (imports done once, as on a
running server): a **cold** load — ``st.cache_data`` cleared so every query
runs — and a **warm** rerun (median of 5). Also the largest number of rows any
dataframe on the page sent. Uses Streamlit's AppTest, which forces eager
dataframe delivery (notes/perf.md §5), so the row counts are what a browser
would receive at most.

Run it against a demo database, e.g.::

    DATABASE_URL=sqlite:///data/bench100k.db python -m surveillance demo --patients 100000
    python -m bench.pages --database-url sqlite:///data/bench100k.db

Only the lead's Trends page, each of its views, cold load the median of 3::

    python -m bench.pages --database-url sqlite:///data/bench100k.db --role lead --page trends --trends-views --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).parents[1]
APP = str(ROOT / "streamlit_app.py")
ROLE_PAGES = {
    "nurse": ["caseload", "patient", "alerts", "calculator", "reference"],
    "physician": ["caseload", "patient", "alerts", "board", "calculator", "reference"],
    "lead": ["trends", "calculator", "reference"],
    "admin": ["health", "admin", "calculator", "reference"],
}


def _user_for(engine, role: str) -> tuple[str, str]:
    from sqlalchemy import text

    from surveillance.demo import DEMO_USERS

    with engine.connect() as conn:
        names = {r[0] for r in conn.execute(text("SELECT username FROM app_user WHERE role = :r"), {"r": role})}
    for user in DEMO_USERS:
        if user.role == role and user.username in names:
            return user.username, user.password
    raise SystemExit(f"no demo user with role {role}: generate the database with `python -m surveillance demo`")


def _rows_sent(at) -> int:
    return max((len(df.value) for df in at.dataframe), default=0)


#: The views of the lead's Trends page (``--trends-views`` times each one).
TRENDS_VIEWS = ("rates", "incidence", "bma", "imaging", "inertia")


def _time(at, repeat: int) -> tuple[float, float]:
    """(median cold seconds over ``repeat`` loads with ``st.cache_data`` cleared, median warm seconds of 5)."""
    import streamlit as st

    cold = []
    for _ in range(repeat):
        st.cache_data.clear()
        start = time.perf_counter()
        at.run()
        cold.append(time.perf_counter() - start)
    warm = []
    for _ in range(5):
        start = time.perf_counter()
        at.run()
        warm.append(time.perf_counter() - start)
    return statistics.median(cold), statistics.median(warm)


def measure(
    url: str,
    *,
    roles: list[str] | None = None,
    pages: list[str] | None = None,
    trends_views: bool = False,
    repeat: int = 1,
) -> list[dict]:
    """Cold and warm timings per page of each role (only ``roles``/``pages`` when given).

    ``trends_views``: time the Trends page once per view (``page`` = ``trends:<view>``) instead of its default view.
    """
    os.environ["DATABASE_URL"] = url
    os.environ["SURVEILLANCE_INPROCESS_SCHEDULER"] = "0"
    from streamlit.testing.v1 import AppTest

    from db.engine import get_engine
    from surveillance.sessions import authenticate

    engine = get_engine(url)
    results = []
    for role, role_pages in ROLE_PAGES.items():
        if roles and role not in roles:
            continue
        role_pages = [p for p in role_pages if not pages or p in pages]
        if not role_pages:
            continue
        username, password = _user_for(engine, role)
        for page in role_pages:
            at = AppTest.from_file(APP, default_timeout=120)
            at.session_state["auth"] = authenticate(engine, username, password, now=datetime.now(timezone.utc))
            if role in ("nurse", "physician") and page == "patient":
                at.session_state["patient_id"] = _a_patient(engine, role, username)
            at.run()
            at.switch_page(f"dashboard/app_pages/{page}.py").run()  # imports and first render
            views = TRENDS_VIEWS if trends_views and page == "trends" else (None,)
            for view in views:
                if view is not None:
                    at.radio(key="trends_view").set_value(view).run()  # the view's first render
                cold, warm = _time(at, repeat)
                errors = [e.value for e in at.exception]
                results.append(
                    {
                        "role": role,
                        "page": page if view is None else f"{page}:{view}",
                        "cold_s": round(cold, 3),
                        "warm_ms": round(warm * 1000, 1),
                        "max_rows_sent": _rows_sent(at),
                        "errors": errors,
                    }
                )
    return results


def _a_patient(engine, role: str, username: str) -> int:
    from sqlalchemy import text

    with engine.connect() as conn:
        if role == "nurse":
            sql = (
                "SELECT s.patient_id FROM risk_snapshot s JOIN app_user u ON u.id = s.assigned_nurse_id "
                "WHERE u.username = :u ORDER BY s.priority DESC LIMIT 1"
            )
        else:
            sql = (
                "SELECT p.id FROM patient p JOIN app_user u ON u.department = p.department "
                "JOIN risk_snapshot s ON s.patient_id = p.id WHERE u.username = :u ORDER BY s.priority DESC LIMIT 1"
            )
        return int(conn.execute(text(sql), {"u": username}).scalar())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", action="append", choices=sorted(ROLE_PAGES), help="only this role (repeatable)")
    parser.add_argument("--page", action="append", help="only this page, e.g. trends (repeatable)")
    parser.add_argument("--trends-views", action="store_true", help="time every view of the Trends page")
    parser.add_argument("--repeat", type=int, default=1, help="cold loads per page; the median is reported")
    args = parser.parse_args(argv)
    results = measure(
        args.database_url, roles=args.role, pages=args.page, trends_views=args.trends_views, repeat=args.repeat
    )
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{'role':<10} {'page':<16} {'cold s':>7} {'warm ms':>8} {'rows':>6}")
        for r in results:
            print(
                f"{r['role']:<10} {r['page']:<16} {r['cold_s']:>7.3f} {r['warm_ms']:>8.1f} {r['max_rows_sent']:>6}"
                + (f"  ERRORS: {r['errors']}" if r["errors"] else "")
            )
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
