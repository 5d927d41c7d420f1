"""Screenshots of every page for every role: ``python -m bench.screenshots (--database-url URL | --url URL)``.

Signs in as one demo account of each role in headless Debian Chromium
(``/usr/bin/chromium``) and saves one full-page PNG per page that role can
open, plus the sign-in page and a few pages in Japanese, into
``docs/screenshots/`` by default (``nurse-1-caseload.png``, ...).

``--database-url`` starts ``streamlit run`` on 127.0.0.1 against a demo
database (``python -m surveillance demo --patients 2000``); ``--url`` uses an
app that is already running on that database.  Japanese labels need a CJK
font (Debian: ``fonts-noto-cjk``).  The PNGs are reduced to a 256-colour
palette so the folder stays small.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS, sign_in, start_app, stop_app

ROOT = Path(__file__).parents[1]
WIDTH, HEIGHT = 1400, 900
#: The tallest screenshot: a longer page is cut here (the reference and the case card are long).
MAX_HEIGHT = 7000
TIMEOUT = 60_000

#: role -> the pages that role can open, in navigation order: (file stem, navigation label in English;
#: None for another view of the page before it).
PAGES = {
    "nurse": [
        ("caseload", "Caseload"),
        ("patient", "Patient"),
        ("alerts", "Alerts"),
        ("calculator", "Calculator"),
        ("reference", "Reference"),
    ],
    "physician": [
        ("caseload", "Caseload"),
        ("patient", "Patient"),
        ("alerts", "Alerts"),
        ("cancer-board", "Cancer board"),
        ("calculator", "Calculator"),
        ("reference", "Reference"),
    ],
    "lead": [("trends", "Trends"), ("calculator", "Calculator"), ("reference", "Reference")],
    "admin": [
        ("system-health", "System health"),
        ("users-and-audit", "Users and audit"),
        ("audit-trail", None),
        ("calculator", "Calculator"),
        ("reference", "Reference"),
    ],
}
#: role -> pages taken again in Japanese (navigation label in Japanese is looked up from the locale).
JAPANESE = {
    "nurse": ["caseload", "patient"],
    "physician": ["cancer-board"],
    "lead": ["trends"],
    "admin": ["system-health"],
}


def _settle(page, seconds: float = 3.0) -> None:
    """Wait until Streamlit has finished the run (no running indicator, no spinner) and charts have drawn."""
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(800)
    try:
        page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=TIMEOUT)
        page.locator('[data-testid="stSpinner"]').first.wait_for(state="hidden", timeout=TIMEOUT)
    except Exception:  # noqa: BLE001 - best effort: a screenshot is still useful
        pass
    page.wait_for_timeout(int(seconds * 1000))


def _shoot(page, path: Path) -> None:
    """A full-page PNG: Streamlit scrolls inside ``stMain``, so the viewport is grown to its height first."""
    height = page.evaluate(
        "() => { const m = document.querySelector('[data-testid=\"stMain\"]');"
        " return m ? m.scrollHeight : document.documentElement.scrollHeight; }"
    )
    page.set_viewport_size({"width": WIDTH, "height": max(HEIGHT, min(int(height), MAX_HEIGHT))})
    page.wait_for_timeout(1500)  # charts resize to the new viewport
    page.screenshot(path=str(path), animations="disabled")
    page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    _compress(path)
    print(f"saved {path.name} ({path.stat().st_size // 1024} KiB)", file=sys.stderr)


def _compress(path: Path) -> None:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with Streamlit
        return
    with Image.open(path) as image:
        reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    reduced.save(path, optimize=True)


def _choose(page, label: str, option: str) -> None:
    """Pick an option of a Streamlit selectbox: long lists are virtualised, so type to filter first."""
    box = page.get_by_label(label, exact=True).last
    box.click()
    box.fill(option)
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(600)


def _number(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    page.wait_for_timeout(600)


def _fill_calculator(page) -> None:
    """One breast-cancer patient with one thoracic lesion and every input known, so every instrument scores."""
    _number(page, "Age (years)", "64")
    _choose(page, "Sex", "F")
    _choose(page, "Primary site", "Breast (breast)")
    _choose(page, "Hormone-dependent (breast, prostate)", "yes")
    _choose(page, "Molecular targeted therapy (lung)", "no")
    _choose(page, "Previous chemotherapy", "yes")
    _choose(page, "ECOG", "1")
    _choose(page, "Ambulatory status", "independent")
    _choose(page, "Frankel grade", "E")
    _choose(page, "Fit for surgery (clinician judgement)", "yes")
    _choose(page, "Visceral metastases", "nodular")
    _choose(page, "Visceral metastases treatable", "yes")
    _choose(page, "Visceral metastases removable", "no")
    _choose(page, "Brain metastases", "no")
    _number(page, "Extraspinal bone metastases (count)", "2")
    _number(page, "Vertebral-body metastases (count)", "1")
    _choose(page, "Spinal disease is one contiguous lesion", "yes")
    _choose(page, "Extraspinal pathological fracture", "no")
    for label, value in (
        ("Albumin (g/dL)", "3.8"),
        ("CRP (mg/dL)", "0.3"),
        ("LDH (U/L)", "210"),
        ("Platelets (/µL)", "250000"),
        ("Calcium (mg/dL)", "9.4"),
        ("Total bilirubin (mg/dL)", "0.6"),
    ):
        _number(page, label, value)
    page.get_by_role("button", name="Add lesion").click()
    page.wait_for_timeout(1000)
    _choose(page, "Level", "T11")
    _choose(page, "Bilsky ESCC grade", "1b")
    _choose(page, "Pain", "mechanical")
    _choose(page, "Bone lesion", "lytic")
    _choose(page, "Alignment", "normal")
    _choose(page, "Vertebral body collapse", "< 50% collapse")
    _choose(page, "Posterolateral involvement", "unilateral")
    page.mouse.click(5, 5)  # leave the last field, so no input is drawn focused


def _select_first_row(page, table_key: str) -> None:
    """Tick the first row of a Streamlit dataframe (a canvas: click its row-selection cell)."""
    table = page.locator(f".st-key-{table_key} [data-testid='stDataFrame']").first
    try:
        table.wait_for(timeout=TIMEOUT)
        box = table.bounding_box()
        if box:
            page.mouse.click(box["x"] + 18, box["y"] + 35 + 17)
    except Exception:  # noqa: BLE001
        pass


def _prepare(page, stem: str) -> None:
    """Bring a page into the state worth showing (a selected row, a case card, a result)."""
    if stem == "caseload":  # open the first alert of the selected patient: what fired it
        page.get_by_test_id("stExpander").first.locator("summary").click()
        _settle(page, 1)
    elif stem == "audit-trail":
        page.get_by_role("tab", name="Audit trail").click()
        _settle(page, 1)
        page.get_by_role("button", name="Verify the audit chain").click()
        _settle(page, 1)
    elif stem == "alerts":
        _select_first_row(page, "alerts_table")
        _settle(page, 2)
    elif stem == "calculator":
        _fill_calculator(page)
        _settle(page, 2)
    elif stem == "reference":
        page.get_by_test_id("stExpander").first.locator("summary").click()
        _settle(page, 1)


def _navigate(page, stem: str, label: str | None) -> None:
    from dashboard.i18n import Translator

    names = "|".join(re.escape(Translator(lang).t("caseload.open_patient")) for lang in ("en", "ja"))
    open_patient = page.get_by_role("button", name=re.compile(f"^({names})$"))
    if label is None:  # another view of the page already open
        return
    if stem == "patient" and open_patient.count():
        # From the caseload: open the selected patient, as a nurse would.
        open_patient.click()
    else:
        page.get_by_role("link", name=label, exact=True).click()
    _settle(page)


def _set_language(page, option: str) -> None:
    page.get_by_label("Language / 言語", exact=False).click()
    page.get_by_role("option", name=option).click()
    _settle(page, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.screenshots", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--database-url", help="start streamlit on this database")
    where.add_argument("--url", help="an app already running (for example http://127.0.0.1:8599)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    parser.add_argument("--roles", nargs="*", default=list(PAGES), choices=list(PAGES))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    from dashboard.i18n import Translator
    from surveillance.demo import DEMO_USERS

    ja = Translator("ja")
    nav_ja = {
        "caseload": "nav.caseload",
        "patient": "nav.patient",
        "alerts": "nav.alerts",
        "cancer-board": "nav.board",
        "trends": "nav.trends",
        "system-health": "nav.health",
        "users-and-audit": "nav.admin",
        "calculator": "nav.calculator",
        "reference": "nav.reference",
    }
    accounts = {}
    for user in DEMO_USERS:
        accounts.setdefault(user.role, user)
    proc, url = (None, args.url.rstrip("/")) if args.url else start_app(args.database_url)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
            page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
            page.goto(url)
            page.get_by_label("Username").wait_for(timeout=TIMEOUT)
            _settle(page, 1)
            _shoot(page, out / "00-login.png")
            page.close()
            for role in args.roles:
                user = accounts[role]
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                sign_in(page, url, user.username, user.password)
                page.get_by_role("link", name=PAGES[role][0][1], exact=True).wait_for(timeout=TIMEOUT)
                _settle(page)
                for index, (stem, label) in enumerate(PAGES[role]):
                    _navigate(page, stem, label)
                    _prepare(page, stem)
                    _shoot(page, out / f"{role}-{index + 1}-{stem}.png")
                _set_language(page, "日本語")
                for stem in JAPANESE.get(role, []):
                    _navigate(page, stem, ja.t(nav_ja[stem]))
                    _shoot(page, out / f"{role}-ja-{stem}.png")
                _set_language(page, "English")
                page.close()
            browser.close()
    finally:
        if proc is not None:
            stop_app(proc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
