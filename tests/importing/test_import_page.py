"""The admin upload page's server side: content sniffing, size limit, and the role check below the UI."""

from __future__ import annotations

import pytest

from dashboard.data import imports
from surveillance.access import Identity, PermissionDenied, Role
from tests.importing.helpers import SAMPLES, bundle, patient, rows

ADMIN = Identity(1, "admin1", "Admin", Role.ADMIN)
NURSE = Identity(2, "nurse1", "Nurse", Role.NURSE, "ortho")


def test_uploads_are_checked_by_content_not_by_extension():
    fhir = (SAMPLES / "ctm-app/TrialMatching_Patient02.json").read_bytes()
    assert imports.check_upload("p.json", fhir) is None
    assert imports.check_upload("p.csv", fhir) == "the content is not CSV"
    assert imports.check_upload("p.json", b"\x89PNG\r\n\x1a\n\x00\x00") == "the content is not FHIR JSON"
    assert imports.check_upload("p.csv", b"mrn,family\nA1,Doe\n") is None
    assert imports.check_upload("p.json", b"   ") == "empty"
    big = b"{" + b" " * (imports.MAX_FILE_BYTES + 1)
    assert imports.check_upload("p.json", big) == "larger than 64 MiB"


def test_only_admins_may_import_and_the_admin_is_the_actor(engine, monkeypatch):
    monkeypatch.setattr(imports, "engine", lambda: engine)
    with pytest.raises(PermissionDenied):
        imports.run_import(NURSE, "x.json", bundle(patient()), partial=False)
    result = imports.run_import(ADMIN, "x.json", bundle(patient()), partial=False)
    assert result.status == "imported"
    assert rows(engine, "SELECT actor, file_name FROM import_batch") == [{"actor": "admin1", "file_name": "x.json"}]
    frame = imports.issues_frame(result)
    assert list(frame.columns) == ["entry_index", "severity", "location", "message"]
    assert len(imports.recent_batches(ADMIN)) == 1
