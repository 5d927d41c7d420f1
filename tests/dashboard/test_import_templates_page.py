"""The import page offers every CSV template for download, each described, and the format document.

What a downloaded template holds is checked by importing it: the example rows
of all twelve templates, patient first, import into the database as they are.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from streamlit.testing.v1 import AppTest

from surveillance.importing import import_file
from tests.dashboard.conftest import NOW, login, new_app, page
from tests.dashboard.support import EN, PAGES_DIR, everything, keep_media

pytestmark = pytest.mark.db

#: The templates of docs/import-format.md ("CSV templates"), patient first (the others name it by MRN).
TEMPLATES = (
    "patient",
    "spinal_lesion",
    "imaging_study",
    "performance_status",
    "neuro_status",
    "lab_result",
    "metastatic_status",
    "bma_administration",
    "treatment",
    "skeletal_event",
    "locomo_condition",
    "dental_exam",
)


def _template_buttons(at: AppTest) -> dict[str, object]:
    return {b.proto.id.rsplit("template_", 1)[1]: b for b in at.get("download_button") if "template_" in b.proto.id}


def test_admin_downloads_each_template_described_and_the_examples_import(app_db, monkeypatch):
    engine = app_db["engine"]
    stores = keep_media(monkeypatch)
    at = login(new_app(), engine, "admin1")
    page(at, "import_data")
    assert not at.exception, at.exception

    buttons = _template_buttons(at)
    assert sorted(buttons) == sorted(TEMPLATES)
    texts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    for kind in TEMPLATES:
        assert buttons[kind].proto.label == f"{kind}.csv"
        description = EN.t(f"import.template_{kind}")
        assert description and description in texts, kind
    assert len({EN.t(f"import.template_{kind}") for kind in TEMPLATES}) == len(TEMPLATES), "one line each"

    # The format document's CSV section is on the page, and the caption names the document.
    assert any("docs/import-format.md" in t for t in texts)
    assert any("The header decides the template" in t for t in texts)

    # Each download is a CSV file with a header and an example row; imported as downloaded, all succeed.
    before = {t: _count(engine, t) for t in ("patient", "lab_result", "spinal_lesion", "dental_exam")}
    for kind in TEMPLATES:
        content = stores[-1].get_file(Path(buttons[kind].proto.url).name).content
        assert content.decode("utf-8-sig").splitlines()[0].startswith("mrn,"), kind
        result = import_file(engine, content, name=f"{kind}.csv", actor="admin1", now=NOW)
        assert result.status == "imported", (kind, [i.message for i in result.issues])
    after = {t: _count(engine, t) for t in before}
    assert after == {t: n + 1 for t, n in before.items()}


def test_the_page_and_its_templates_are_refused_to_a_nurse(app_db):
    at = login(AppTest.from_file(str(PAGES_DIR / "import_data.py"), default_timeout=60), app_db["engine"], "nurse1")
    at.run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [EN.t("app.denied")]
    assert not _template_buttons(at)
    assert EN.t("import.templates") not in everything(at)


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
