"""Screenshots of every page for every role: ``python -m bench.screenshots --database-url URL [--out DIR]``.

Starts ``streamlit run`` on 127.0.0.1 against a demo database, signs in as each
demo account in headless Debian Chromium and saves one PNG per page (plus the
login page and a Japanese caseload) into ``docs/screenshots/`` by default.
Japanese labels need a CJK font (Debian: ``fonts-noto-cjk``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS, sign_in, start_app, stop_app

ROOT = Path(__file__).parents[1]
PAGES = {
    "nurse": ["Caseload", "Patient", "Alerts"],
    "physician": ["Cancer board"],
    "lead": ["Trends"],
    "admin": ["System health", "Users and audit", "Calculator", "Reference"],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    from surveillance.demo import DEMO_USERS

    accounts = {}
    for user in DEMO_USERS:
        accounts.setdefault(user.role, user)
    proc, url = start_app(args.database_url)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1800})
            page.goto(url)
            page.get_by_label("Username").wait_for(timeout=60_000)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / "00-login.png"))
            for role, titles in PAGES.items():
                user = accounts[role]
                page = browser.new_page(viewport={"width": 1440, "height": 2000})
                sign_in(page, url, user.username, user.password)
                page.get_by_role("link", name=titles[0]).wait_for(timeout=60_000)
                for index, title in enumerate(titles):
                    page.get_by_role("link", name=title).click()
                    page.wait_for_load_state("networkidle")
                    page.wait_for_timeout(4000)
                    name = f"{role}-{index + 1}-{title.lower().replace(' ', '-')}.png"
                    page.screenshot(path=str(out / name))
                    print(f"saved {name}", file=sys.stderr)
                if role == "nurse":
                    page.get_by_role("link", name="Caseload").click()
                    page.get_by_label("Language / 言語", exact=False).click()
                    page.get_by_role("option", name="日本語").click()
                    page.wait_for_timeout(4000)
                    page.screenshot(path=str(out / "nurse-caseload-ja.png"))
                page.close()
            browser.close()
    finally:
        stop_app(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
