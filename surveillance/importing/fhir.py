"""FHIR R4 (mCODE STU1 and STU4) → import records.

Accepts a Bundle of any type (collection, transaction, searchset, batch,
document) or a single resource.  Each mapped resource is first validated with
``fhir.resources`` (R4B models, which cover R4 JSON); a resource that does not
validate is an error at its entry, so the file is rejected unless ``--partial``.
Mapping then works on the JSON, keyed on *codes*, never on ``meta.profile``
alone (the corpus mixes STU1 and STU4 profiles; fhir-data §5).  The table of
what maps to what, with sources, is ``docs/import-format.md``; the code tables
are :mod:`surveillance.importing.codes`.

References are resolved within the file: ``Patient/x``, ``urn:uuid:x`` (UUID or
not), a bare id and absolute URLs ending in ``Type/id``.  A subject that is not
in the file becomes a reference to a patient imported earlier (same
``source_system`` and ``source_id``); the writer reports it when there is none.
Resources of unmapped types (Claim, Encounter, Practitioner …) are counted and
skipped.  Duplicate resources (same type and id) are imported once; a duplicate
with different content is an error.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from typing import Any

from surveillance.importing import codes as c
from surveillance.importing import records as r
from surveillance.importing.records import ImportIssue, Origin, ParseResult

SOURCE_SYSTEM = "fhir"
MAPPED = frozenset(
    {
        "Patient",
        "Condition",
        "Observation",
        "MedicationAdministration",
        "MedicationStatement",
        "MedicationRequest",
        "Procedure",
        "ImagingStudy",
        "DiagnosticReport",
    }
)
SKIP_STATUS = frozenset({"entered-in-error", "not-done", "cancelled", "stopped", "revoked", "draft", "preliminary"})
_DATE_RX = re.compile(r"^\d{4}-\d{2}-\d{2}")


class _Skip(Exception):
    """The resource is valid but says nothing the product stores (reported as info)."""


class _Bad(Exception):
    """The resource cannot be mapped: an error at its entry."""


# --------------------------------------------------------------------------- small readers


def _codings(concept: dict | None) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [x for x in concept.get("coding") or [] if isinstance(x, dict)]


def _code_in(concept: dict | None, system_prefix: str, values) -> str | None:
    for cd in _codings(concept):
        if (cd.get("system") or "").startswith(system_prefix) and cd.get("code") in values:
            return cd["code"]
    return None


def _text_of(concept: dict | None) -> str:
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text") or ""] + [cd.get("display") or "" for cd in _codings(concept)]
    return " ".join(p for p in parts if p)


def _day(value: Any) -> str | None:
    """The calendar date of a FHIR date/dateTime as written (``2019-04-01T..-05:00`` -> 2019-04-01)."""
    if isinstance(value, str) and _DATE_RX.match(value):
        return value[:10]
    return None


def _first_day(resource: dict, *paths: str) -> str | None:
    for path in paths:
        node: Any = resource
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        day = _day(node)
        if day:
            return day
    return None


def _ext(resource: dict, suffix: str) -> list[dict]:
    return [e for e in resource.get("extension") or [] if isinstance(e, dict) and (e.get("url") or "").endswith(suffix)]


def _profiles(resource: dict) -> str:
    return " ".join((resource.get("meta") or {}).get("profile") or [])


# --------------------------------------------------------------------------- validation


def _validate(resource: dict) -> str | None:
    """``None`` when ``fhir.resources`` accepts the resource, else a one-line reason."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        model = get_fhir_model_class(resource["resourceType"])
    except (KeyError, ValueError):
        return f"unknown resourceType {resource.get('resourceType')!r}"
    try:
        model.model_validate(resource)
    except Exception as err:  # pydantic ValidationError and fhir_core errors
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:4]) if len(lines) > 1 else (lines[0] if lines else type(err).__name__)
        return f"not valid FHIR R4: {detail[:400]}"
    return None


# --------------------------------------------------------------------------- the parser


class _Parser:
    def __init__(self, name: str) -> None:
        self.name = name
        self.out = ParseResult(format="fhir")
        self.index: dict[str, dict] = {}  # reference key -> resource
        self.patients: dict[str, r.PatientRecord] = {}  # source id -> record
        self.fallback_day: str | None = None
        self.ps_by_day: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)

    # -- references --------------------------------------------------------
    def _keys(self, resource: dict, full_url: str | None) -> list[str]:
        keys = []
        rid = resource.get("id")
        rtype = resource.get("resourceType")
        if rid:
            keys += [f"{rtype}/{rid}", f"urn:uuid:{rid}", rid]
        if full_url:
            keys.append(full_url)
        return keys

    def resolve(self, reference: dict | None) -> dict | None:
        if not isinstance(reference, dict):
            return None
        ref = reference.get("reference")
        if not isinstance(ref, str) or not ref:
            return None
        if ref in self.index:
            return self.index[ref]
        parts = ref.rstrip("/").split("/")
        if len(parts) >= 2 and f"{parts[-2]}/{parts[-1]}" in self.index:
            return self.index[f"{parts[-2]}/{parts[-1]}"]
        return None

    def source_id(self, resource: dict, full_url: str | None) -> str:
        if resource.get("id"):
            return f"{resource['resourceType']}/{resource['id']}"
        if full_url:
            return full_url[:128]
        digest = hashlib.sha256(json.dumps(resource, sort_keys=True).encode()).hexdigest()[:24]
        return f"{resource.get('resourceType')}#sha256:{digest}"

    def patient_ref(self, resource: dict, origin: Origin) -> str:
        subject = resource.get("subject") or resource.get("patient")
        target = self.resolve(subject)
        if target is not None and target.get("resourceType") == "Patient":
            return f"Patient/{target['id']}" if target.get("id") else self._by_identity(target)
        ref = (subject or {}).get("reference") if isinstance(subject, dict) else None
        if not ref:
            raise _Bad("no subject: the resource names no patient")
        parts = ref.rstrip("/").split("/")
        if ref.startswith("urn:uuid:"):
            pid = ref[len("urn:uuid:") :]
        elif len(parts) >= 2 and parts[-2] == "Patient":
            pid = parts[-1]
        elif len(parts) == 1:
            pid = parts[0]
        else:
            raise _Bad(f"subject {ref!r} is not a Patient reference")
        source = f"Patient/{pid}"
        if source not in self.patients:
            # not in this file: a patient imported before, else the writer reports it unresolved
            self.patients[source] = r.PatientRecord(source, origin, SOURCE_SYSTEM)
            self.out.issues.append(
                ImportIssue.at(
                    origin, f"subject {ref!r} is not in this file: looked up among patients imported before", "info"
                )
            )
        return source

    def _by_identity(self, patient: dict) -> str:
        for key, res in self.index.items():
            if res is patient and key.startswith("urn:"):
                return key[:128]
        return "Patient#unknown"

    # -- entry point ---------------------------------------------------------
    def parse(self, data: bytes) -> ParseResult:
        try:
            doc = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            self.out.issues.append(ImportIssue(None, self.name, f"not JSON: {err}"))
            return self.out
        if not isinstance(doc, dict) or "resourceType" not in doc:
            self.out.issues.append(ImportIssue(None, self.name, "not a FHIR resource: no resourceType"))
            return self.out
        entries: list[tuple[int | None, str | None, dict, str]] = []
        if doc["resourceType"] == "Bundle":
            self.fallback_day = _day(doc.get("timestamp")) or _day((doc.get("meta") or {}).get("lastUpdated"))
            for i, entry in enumerate(doc.get("entry") or []):
                loc = f"Bundle.entry[{i}]"
                if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                    self.out.issues.append(ImportIssue(i, loc, "entry without a resource"))
                    continue
                res = entry["resource"]
                if (entry.get("request") or {}).get("method") == "DELETE":
                    self.out.issues.append(ImportIssue(i, loc, "DELETE requests are not imported", "warning"))
                    continue
                entries.append(
                    (i, entry.get("fullUrl"), res, f"{loc}.resource({res.get('resourceType')}/{res.get('id', '?')})")
                )
        else:
            self.fallback_day = _day((doc.get("meta") or {}).get("lastUpdated"))
            entries.append((0, None, doc, f"{doc['resourceType']}/{doc.get('id', '?')}"))
        self.out.entries = len(entries)

        # index, duplicates, validation
        seen: dict[str, tuple[int | None, str]] = {}
        work: list[tuple[Origin, str | None, dict]] = []
        skipped: dict[str, int] = defaultdict(int)
        for index, full_url, res, loc in entries:
            origin = Origin(index, loc)
            rtype = res.get("resourceType")
            if not isinstance(rtype, str):
                self.out.issues.append(ImportIssue.at(origin, "resource without resourceType"))
                continue
            sid = self.source_id(res, full_url)
            canonical = json.dumps(res, sort_keys=True)
            if sid in seen:
                first, first_text = seen[sid]
                if first_text == canonical:
                    self.out.issues.append(
                        ImportIssue.at(origin, f"duplicate of entry {first} ({sid}): imported once", "warning")
                    )
                else:
                    self.out.issues.append(
                        ImportIssue.at(origin, f"{sid} appears again (entry {first}) with different content")
                    )
                continue
            seen[sid] = (index, canonical)
            for key in self._keys(res, full_url):
                self.index.setdefault(key, res)
            if rtype not in MAPPED:
                skipped[rtype] += 1
                continue
            problem = _validate(res)
            if problem:
                self.out.issues.append(ImportIssue.at(origin, problem))
                continue
            work.append((origin, full_url, res))
        if skipped:
            self.out.issues.append(
                ImportIssue(
                    None,
                    self.name,
                    "not imported (no product fact): " + ", ".join(f"{k} x{v}" for k, v in sorted(skipped.items())),
                    "info",
                )
            )

        # patients first, so facts find them
        for origin, full_url, res in work:
            if res["resourceType"] == "Patient":
                self._guard(origin, self.patient, res, full_url)
        for origin, full_url, res in work:
            rtype = res["resourceType"]
            if rtype == "Patient":
                continue
            handler = {
                "Condition": self.condition,
                "Observation": self.observation,
                "MedicationAdministration": self.medication,
                "MedicationStatement": self.medication,
                "MedicationRequest": self.medication,
                "Procedure": self.procedure,
                "ImagingStudy": self.imaging_study,
                "DiagnosticReport": self.diagnostic_report,
            }[rtype]
            self._guard(origin, handler, res, full_url)
        self._ps_consistency()
        self.out.records[:0] = list(self.patients.values())
        return self.out

    def _guard(self, origin: Origin, handler, res: dict, full_url: str | None) -> None:
        status = res.get("status")
        if isinstance(status, str) and status in SKIP_STATUS:
            self.out.issues.append(ImportIssue.at(origin, f"status {status!r}: not imported", "info"))
            return
        try:
            handler(origin, res, full_url)
        except _Skip as why:
            concept = res.get("code") or res.get("medicationCodeableConcept")
            what = _text_of(concept)[:80] or res["resourceType"]
            self.out.issues.append(ImportIssue.at(origin, str(why) or f"{what}: nothing the product stores", "info"))
        except _Bad as why:
            self.out.issues.append(ImportIssue.at(origin, str(why)))

    def add(self, record: r.Record) -> None:
        self.out.records.append(record)

    # -- Patient -------------------------------------------------------------
    def patient(self, origin: Origin, res: dict, full_url: str | None) -> None:
        sid = f"Patient/{res['id']}" if res.get("id") else self._by_identity(res)
        mrn = None
        identifiers = [i for i in res.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
        for ident in identifiers:
            if _code_in(ident.get("type"), "http://terminology.hl7.org/CodeSystem/v2-0203", {"MR"}):
                mrn = ident["value"]
                break
        if mrn is None or len(mrn) > 32:
            derived = "FHIR-" + hashlib.sha256(sid.encode()).hexdigest()[:16].upper()
            self.out.issues.append(
                ImportIssue.at(
                    origin,
                    f"no identifier typed MR (medical record number){' of at most 32 characters' if mrn else ''}: "
                    f"MRN {derived} assigned from the resource id",
                    "warning",
                )
            )
            mrn = derived
        names = [n for n in res.get("name") or [] if isinstance(n, dict)]
        official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
        family = official.get("family")
        given = " ".join(official.get("given") or []) or None
        if not family and official.get("text"):
            family = official["text"]
        status, deceased_on = None, None
        if _day(res.get("deceasedDateTime")):
            status, deceased_on = "deceased", _day(res["deceasedDateTime"])
        elif res.get("deceasedBoolean") is True:
            raise _Bad("deceasedBoolean is true without a date: the product needs the date of death (deceasedDateTime)")
        record = self.patients.get(sid) or r.PatientRecord(sid, origin, SOURCE_SYSTEM)
        record.origin = origin
        record.mrn = mrn
        record.family_name = family
        record.given_name = given or ("-" if family else None)
        if given is None and family:
            self.out.issues.append(ImportIssue.at(origin, "no given name: recorded as '-'", "warning"))
        record.birth_date = res.get("birthDate")
        if record.birth_date is None:
            self.out.issues.append(ImportIssue.at(origin, "no birthDate: age-based scores stay unknown", "warning"))
        record.sex = res.get("gender")
        if status:
            record.status, record.status_on, record.deceased_on = status, deceased_on, deceased_on
        # the product's own extensions (its export): the rest of the patient row
        for name, (field, kind) in c.PATIENT_EXTENSIONS.items():
            value = c.product_ext(res, name, kind)
            if value is not None:
                setattr(record, field, value)
        self.patients[sid] = record

    def _patient_record(self, ref: str) -> r.PatientRecord:
        return self.patients[ref]

    # -- Condition -------------------------------------------------------------
    def condition(self, origin: Origin, res: dict, full_url: str | None) -> None:
        ver = _code_in(res.get("verificationStatus"), "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                       {"refuted", "entered-in-error"})  # fmt: skip
        if ver:
            raise _Skip(f"verificationStatus {ver}: not imported")
        code = res.get("code")
        own = c.product_code(code)
        if own is not None and c.product_ext(res, "skeletal-related-event", "Boolean") is True:
            return self._sre(origin, res, full_url, own, _first_day(res, "onsetDateTime", "recordedDate"))
        if own is not None and own in _locomo_conditions():
            day = _first_day(res, "onsetDateTime", "recordedDate")
            if not day:
                raise _Bad(f"Cancer Locomo condition {own}: no onset date")
            self.add(r.LocomoConditionRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM,
                                             self.patient_ref(res, origin), condition=own, onset_on=day,
                                             **_locomo_details(res)))  # fmt: skip
            return None
        sct = {cd.get("code") for cd in _codings(code) if (cd.get("system") or "").startswith(c.SNOMED)}
        icd = {
            (cd.get("code") or "").upper()
            for cd in _codings(code)
            if (cd.get("system") or "").startswith(c.ICD10_PREFIXES)
        }
        profiles = _profiles(res)
        quirk = next((c.SYNTHEA_PRIMARY_QUIRKS[x] for x in sct if x in c.SYNTHEA_PRIMARY_QUIRKS), None)
        if quirk:
            return self._primary(origin, res, forced=quirk)
        bone = bool(sct & c.BONE_METASTASIS_SNOMED) or any(x.startswith(c.BONE_METASTASIS_ICD10) for x in icd)
        brain = bool(sct & c.BRAIN_METASTASIS_SNOMED) or any(x.startswith(c.BRAIN_METASTASIS_ICD10) for x in icd)
        secondary = (
            bone
            or brain
            or bool(sct & c.OTHER_SECONDARY_SNOMED)
            or any(x[:3] in ("C77", "C78", "C79") for x in icd)
            or any(p in profiles for p in c.SECONDARY_PROFILES)
        )
        if not secondary:
            return self._primary(origin, res)
        pref = self.patient_ref(res, origin)
        sid = self.source_id(res, full_url)
        day = _first_day(res, "onsetDateTime", "onsetPeriod.start", "recordedDate")
        for e in _ext(res, "condition-assertedDate"):
            day = day or _day(e.get("valueDateTime"))
        if bone:
            day = day or self._fallback(origin, "bone metastasis")
            sites = res.get("bodySite") or []
            levels: list[str] = []
            for site in sites:
                levels += [lv for lv in _levels(site) if lv not in levels]
            for lv in levels:
                self.add(r.LesionRecord(f"{sid}#{lv}", origin, SOURCE_SYSTEM, pref, level=lv, first_seen_on=day))
            details = _locomo_details(res) if c.has_product_row(res) else {}
            self.add(
                r.LocomoConditionRecord(
                    f"{sid}#locomo", origin, SOURCE_SYSTEM, pref, condition="bone_metastasis", onset_on=day, **details
                )  # fmt: skip
            )
            if not levels:
                self.out.issues.append(
                    ImportIssue.at(
                        origin,
                        "bone metastasis without a vertebral level: recorded as a Cancer Locomo "
                        "condition; spinal lesions come from imaging or a vertebral bodySite",
                        "info",
                    )
                )
            return None
        if brain:
            day = day or self._fallback(origin, "brain metastasis")
            self.add(r.MetastaticStatusRecord(f"{sid}#brain", origin, SOURCE_SYSTEM, pref, recorded_on=day,
                                              brain_metastases=True))  # fmt: skip
            return None
        raise _Skip(
            f"secondary cancer ({_text_of(code)[:80]}): not bone or brain; visceral status (nodular or "
            "disseminated) is not given, so it is not recorded"
        )

    def _fallback(self, origin: Origin, what: str) -> str:
        if self.fallback_day:
            self.out.issues.append(
                ImportIssue.at(
                    origin,
                    f"{what} without onset or recorded date: dated {self.fallback_day}, the "
                    "Bundle's timestamp/lastUpdated (the latest day it was known)",
                    "warning",
                )
            )
            return self.fallback_day
        raise _Bad(f"{what} without a date (onset, recordedDate or assertedDate) and the file has no timestamp")

    def _primary(self, origin: Origin, res: dict, forced: str | None = None) -> None:
        from surveillance.scoring.histology import UnknownHistology, normalise_histology, site_from_coding

        code = res.get("code")
        if c.product_ext(res, "primary-site-unknown", "Boolean") is True:
            # the product's export: a histology whose primary site was left unknown stays so
            self.patients[self.patient_ref(res, origin)].primary_histology = (code or {}).get("text")
            return
        profiles = _profiles(res)
        is_primary_profile = any(p in profiles for p in c.PRIMARY_PROFILES)
        sites: tuple = ()
        matched = ""
        if forced:
            sites, matched = (forced,), _text_of(code)
        else:
            for cd in _codings(code):
                try:
                    match = site_from_coding(cd.get("system") or "", cd.get("code") or "", cd.get("display"))
                except UnknownHistology:
                    continue
                sites, matched = tuple(s.value for s in match.sites), match.matched_term
                break
            if not sites and _text_of(code):
                try:
                    match = normalise_histology(_text_of(code))
                    sites, matched = tuple(s.value for s in match.sites), match.matched_term
                except UnknownHistology:
                    pass
        if not sites:
            if is_primary_profile:
                raise _Bad(
                    f"primary cancer {_text_of(code)[:80]!r}: no primary site could be derived from its codes or text"
                )
            raise _Skip("")  # another condition (comorbidity): not a product fact
        pref = self.patient_ref(res, origin)
        record = self.patients[pref]
        histology = None
        for e in _ext(res, "histology-morphology-behavior") + _ext(res, "histology-morphology-behavior-vs"):
            histology = _text_of(e.get("valueCodeableConcept")) or histology
        text = histology or (_codings(code)[0].get("display") if _codings(code) else None) or (code or {}).get("text")
        if len(sites) > 1:
            self.out.issues.append(
                ImportIssue.at(
                    origin,
                    f"primary {matched!r} maps to several sites ({', '.join(sites)}): primary_site left unknown",
                    "warning",
                )
            )
            return
        if record.primary_site and record.primary_site != sites[0]:
            self.out.issues.append(
                ImportIssue.at(
                    origin, f"a second primary ({sites[0]}) besides {record.primary_site}: the first is kept", "warning"
                )
            )
            return
        record.primary_site = sites[0]
        if text:
            try:
                normalise_histology(text)
                record.primary_histology = text[:256]
            except UnknownHistology:
                pass

    # -- Observation -----------------------------------------------------------
    def observation(self, origin: Origin, res: dict, full_url: str | None) -> None:
        code = res.get("code")
        loinc = {cd.get("code") for cd in _codings(code) if (cd.get("system") or "").startswith(c.LOINC)}
        own = {cd.get("code") for cd in _codings(code) if cd.get("system") == c.SPINE_CS}
        product = c.product_code(code)
        if product == c.NEURO_STATUS_CODE:
            return self._product_observation(origin, res, full_url, r.NeuroStatusRecord, c.NEURO_COMPONENTS)
        if product == c.METASTATIC_STATUS_CODE:
            return self._product_observation(origin, res, full_url, r.MetastaticStatusRecord, c.METASTATIC_COMPONENTS)
        if c.ECOG_LOINC in loinc or c.KPS_LOINC in loinc:
            return self._performance(origin, res, full_url, ecog=c.ECOG_LOINC in loinc)
        if own & c.SPINE_ASSESSMENT_CODES:
            return self._spine(origin, res, full_url, own)
        from surveillance.labs import LOINC_TO_TEST

        lab = next((LOINC_TO_TEST[x] for x in loinc if x in LOINC_TO_TEST), None)
        if lab is not None:
            return self._lab(origin, res, full_url, lab, next(x for x in loinc if x in LOINC_TO_TEST))
        raise _Skip("")

    def _when(self, res: dict) -> str:
        day = _first_day(res, "effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued")
        if not day:
            raise _Bad("no effective date (effective[x] or issued)")
        return day

    def _performance(self, origin: Origin, res: dict, full_url: str | None, *, ecog: bool) -> None:
        pref = self.patient_ref(res, origin)
        day = self._when(res)
        value = res.get("valueInteger")
        if value is None and isinstance(res.get("valueQuantity"), dict):
            value = res["valueQuantity"].get("value")
        answers = c.ECOG_ANSWERS if ecog else c.KPS_ANSWERS
        answer = None
        for concept in [res.get("valueCodeableConcept"), *(res.get("interpretation") or [])]:
            found = _code_in(concept, c.LOINC, answers)
            if found:
                answer = answers[found]
                break
        if value is None:
            value = answer
        elif answer is not None and answer != value:
            self.out.issues.append(
                ImportIssue.at(
                    origin, f"value {value} and its LOINC answer ({answer}) disagree: the value is used", "warning"
                )  # fmt: skip
            )
        if value is None:
            raise _Bad(f"{'ECOG' if ecog else 'Karnofsky'} observation without a value")
        name = "ECOG" if ecog else "KPS"
        if ecog and value == 5:
            raise _Bad("ECOG 5 (dead) is recorded as the patient's deceased status, not as a performance status")
        sid = self.source_id(res, full_url)
        self.ps_by_day[(pref, day)][name] = value
        kps = None if ecog else value
        if ecog and c.has_product_row(res):  # the product's export: one record with both scores
            for comp in res.get("component") or []:
                if _code_in(comp.get("code"), c.LOINC, {c.KPS_LOINC}) and comp.get("valueInteger") is not None:
                    kps = comp["valueInteger"]
                    self.ps_by_day[(pref, day)]["KPS"] = kps
        self.add(
            r.PerformanceStatusRecord(
                sid,
                origin,
                SOURCE_SYSTEM,
                pref,
                recorded_on=day,
                ecog=value if ecog else None,
                kps=kps,
            )  # fmt: skip
        )

    def _ps_consistency(self) -> None:
        from surveillance.scoring.performance_status import kps_to_ecog

        for (pref, day), values in self.ps_by_day.items():
            e, k = values.get("ECOG"), values.get("KPS")
            if e is None or k is None or not isinstance(e, int) or not isinstance(k, int) or not 0 <= k <= 100:
                continue
            try:
                expected = kps_to_ecog(k)
            except (ValueError, KeyError):
                continue
            if abs(expected - e) >= 2:
                self.out.issues.append(
                    ImportIssue(
                        None,
                        f"{pref} on {day}",
                        f"ECOG {e} and KPS {k} on the same day disagree (KPS {k} "
                        f"is about ECOG {expected}): please check",
                        "warning",
                    )  # fmt: skip
                )

    def _lab(self, origin: Origin, res: dict, full_url: str | None, test, loinc: str) -> None:
        pref = self.patient_ref(res, origin)
        day = self._when(res)
        quantity = res.get("valueQuantity")
        if not isinstance(quantity, dict) or quantity.get("value") is None:
            raise _Bad(f"{test.value} ({loinc}) without a valueQuantity")
        unit = quantity.get("code") or quantity.get("unit")
        self.add(
            r.LabRecord(
                self.source_id(res, full_url),
                origin,
                SOURCE_SYSTEM,
                pref,
                collected_on=day,
                test=test.value,
                value=quantity["value"],
                unit=unit,
                loinc=loinc,
            )  # fmt: skip
        )

    def _spine(self, origin: Origin, res: dict, full_url: str | None, own: set[str]) -> None:
        pref = self.patient_ref(res, origin)
        day = self._when(res)
        levels = _levels(res.get("bodySite"))
        if not levels:
            raise _Bad("SINS/ESCC assessment without a vertebral level in bodySite")
        values: dict[str, str] = {}

        def token(item: dict) -> str | None:
            concept = item.get("valueCodeableConcept")
            for cd in _codings(concept):
                if cd.get("system") == c.SPINE_CS and cd.get("code"):
                    return cd["code"]
            return item.get("valueString")

        if "bilsky-escc" in own and token(res):
            values["bilsky_escc"] = token(res)
        for comp in res.get("component") or []:
            for cd in _codings(comp.get("code")):
                field = c.SPINE_COMPONENTS.get(cd.get("code")) if cd.get("system") == c.SPINE_CS else None
                if field:
                    values[field] = token(comp)
        first_seen = c.product_ext(res, "lesion-first-seen", "Date")
        if not values and not first_seen:
            raise _Bad("SINS/ESCC assessment without any component value")
        sid = self.source_id(res, full_url)
        end = levels[-1] if len(levels) > 1 else None
        wbb = {f: c.product_ext(res, f.replace("_", "-"), "String") for f in ("wbb_zones", "wbb_layers", "wbb_numbering")}
        study = None
        if c.has_product_row(res):  # the product's export: the imaging study the assessment was made on
            for ref in res.get("derivedFrom") or []:
                target = self.resolve(ref)
                if target is not None and target.get("resourceType") == "ImagingStudy":
                    study = self.source_id(target, (ref or {}).get("reference"))
        self.add(r.LesionRecord(sid, origin, SOURCE_SYSTEM, pref, level=levels[0], level_span_end=end,
                                first_seen_on=first_seen or day, assessed_on=day,
                                active=c.product_ext(res, "lesion-active", "Boolean"), imaging_source=study,
                                **wbb, **values))  # fmt: skip

    # -- Medications -------------------------------------------------------------
    def medication(self, origin: Origin, res: dict, full_url: str | None) -> None:
        concept = res.get("medicationCodeableConcept")
        from surveillance.service import TREATMENTS

        own = c.product_code(concept)
        if own is not None and own in TREATMENTS["systemic"]:
            start = _first_day(res, "effectivePeriod.start", "effectiveDateTime")
            if not start:
                raise _Bad(f"systemic therapy {own}: no start date")
            self.add(r.TreatmentRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM,
                                       self.patient_ref(res, origin), kind="systemic", modality=own, started_on=start,
                                       ended_on=_first_day(res, "effectivePeriod.end"),
                                       emergency=c.product_ext(res, "emergency", "Boolean") is True))  # fmt: skip
            return
        if concept is None:
            target = self.resolve(res.get("medicationReference"))
            if target is None:
                if res.get("medicationReference"):
                    raise _Bad(f"unresolved medicationReference {res['medicationReference'].get('reference')!r}")
                raise _Skip("")
            concept = target.get("code")
        product = None
        for cd in _codings(concept):
            if (cd.get("system") or "").startswith(c.RXNORM) and cd.get("code") in c.BMA_RXNORM:
                product = c.BMA_RXNORM[cd["code"]]
                break
        text = _text_of(concept)
        agent = product.agent if product else next((a for k, a in c.BMA_NAMES.items() if k in text.lower()), None)
        if agent is None:
            raise _Skip("")  # not a bone-modifying agent
        pref = self.patient_ref(res, origin)
        rtype = res["resourceType"]
        if rtype == "MedicationAdministration":
            day = _first_day(res, "effectiveDateTime", "effectivePeriod.start")
            dose = (res.get("dosage") or {}).get("dose")
        elif rtype == "MedicationStatement":
            day = _first_day(res, "effectiveDateTime", "effectivePeriod.start", "dateAsserted")
            dosage = (res.get("dosage") or [{}])[0]
            dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity")
        else:
            day = _first_day(res, "authoredOn")
            dosage = (res.get("dosageInstruction") or [{}])[0]
            dose = ((dosage.get("doseAndRate") or [{}])[0]).get("doseQuantity")
            self.out.issues.append(
                ImportIssue.at(origin, f"{agent} from an order (MedicationRequest): dated by authoredOn", "info")
            )
        if not day:
            raise _Bad(f"{agent}: no administration date")
        mg = None
        if isinstance(dose, dict) and dose.get("value") is not None:
            unit = (dose.get("code") or dose.get("unit") or "").strip()
            if unit.lower() != "mg":
                raise _Bad(f"{agent} dose in {unit!r}: give the dose in mg")
            mg = dose["value"]
        if mg is None:
            mg = (product.strength_mg if product else None) or c.strength_from_display(text)
        self.add(r.BmaRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM, pref, given_on=day,
                             agent=agent, dose_mg=mg))  # fmt: skip

    # -- Procedure -------------------------------------------------------------
    def procedure(self, origin: Origin, res: dict, full_url: str | None) -> None:
        code = res.get("code")
        own = c.product_code(code)
        if own is not None and self._product_procedure(origin, res, full_url, own):
            return
        text = _text_of(code).lower()
        is_rt = bool(_code_in(code, c.SNOMED, c.RADIOTHERAPY_SNOMED)) or "radiotherap" in text
        surgery = None if is_rt else next((mod for word, mod in c.SURGERY_TEXT if word in text), None)
        if not is_rt and own in _surgeries():
            surgery = own  # the product's own code names the surgery exactly (MISt has no text of its own)
        if not is_rt and surgery is None:
            raise _Skip("")
        start = _first_day(res, "performedDateTime", "performedPeriod.start")
        end = _first_day(res, "performedPeriod.end")
        if not start:
            raise _Bad("procedure without a performed date")
        sites = list(res.get("bodySite") or [])
        for e in _ext(res, "radiotherapy-dose-delivered-to-volume"):
            for sub in e.get("extension") or []:
                if sub.get("url") == "volume":
                    target = self.resolve(sub.get("valueReference"))
                    if target is not None:
                        sites.append(target.get("location") or {})
                        sites.append({"text": target.get("description") or ""})
        levels: list[str] = []
        region = None
        bone = False
        for site in sites:
            levels += [lv for lv in _levels(site) if lv not in levels]
            region = region or _region(site)
            bone = bone or bool(_code_in(site, c.SNOMED, c.BONE_SNOMED))
        spine = bool(levels) or region is not None
        if not spine and surgery and not bone:
            levels = c.levels_from_text(text)
            spine = bool(levels)
        if not spine and not bone:
            raise _Skip("procedure not to bone or spine: not a skeletal event")
        pref = self.patient_ref(res, origin)
        sid = self.source_id(res, full_url)
        dose_gy, fractions = self._rt_dose(res)
        if is_rt:
            modality = "cebrt"
            if any(w in text for w in c.SBRT_TEXT):
                modality = "sbrt"
            elif any(w in text.split() for w in c.SRS_TEXT) or "radiosurgery" in text:
                modality = "srs"
        kind = "radiotherapy" if is_rt else "surgery"
        margin = c.product_ext(res, "separation-margin", "Quantity")
        margin_mm = margin.get("value") if isinstance(margin, dict) else None
        emergency = c.product_ext(res, "emergency", "Boolean") is True
        if spine:
            for i, lv in enumerate(levels or [None]):
                self.add(r.TreatmentRecord(f"{sid}#{lv or region}", origin, SOURCE_SYSTEM, pref, kind=kind,
                                           modality=modality if is_rt else surgery, started_on=start, ended_on=end,
                                           level=lv, region=region if lv is None else None,
                                           dose_gy=dose_gy, fractions=fractions, separation_margin_mm=margin_mm,
                                           emergency=emergency))  # fmt: skip
                if is_rt and modality == "cebrt" and i == 0:
                    self.out.issues.append(
                        ImportIssue.at(
                            origin,
                            "radiotherapy technique not given as SBRT/SRS: recorded as "
                            "conventional external-beam (cEBRT)",
                            "info",
                        )
                    )
        event = "radiation_to_bone" if is_rt else "surgery_to_bone"
        if c.product_ext(res, "skeletal-related-event", "Boolean") is False:
            return  # the product's export: no skeletal-related event was recorded for this treatment
        sre_emergency = c.product_ext(res, "sre-emergency", "Boolean") is True
        for lv in levels or [None]:
            self.add(r.SkeletalEventRecord(f"{sid}#sre{'-' + lv if lv else ''}", origin, SOURCE_SYSTEM, pref,
                                           occurred_on=start, event_type=event, level=lv,
                                           emergency=sre_emergency))  # fmt: skip

    def _product_procedure(self, origin: Origin, res: dict, full_url: str | None, own: str) -> bool:
        """A Procedure in the product's code system that is not a treatment: an SRE, a dental examination or
        a cancer-board case.  ``False`` for anything else (a surgery coded by the product is a treatment)."""
        if c.product_ext(res, "skeletal-related-event", "Boolean") is True:
            self._sre(origin, res, full_url, own, _first_day(res, "performedDateTime", "performedPeriod.start"))
            return True
        if own == c.DENTAL_EXAM_CODE:
            day = _first_day(res, "performedDateTime", "performedPeriod.start")
            if not day:
                raise _Bad("dental examination without a date")
            notes = [n.get("text") for n in res.get("note") or [] if isinstance(n, dict) and n.get("text")]
            self.add(r.DentalExamRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM,
                                        self.patient_ref(res, origin), examined_on=day,
                                        onj_suspected=c.product_ext(res, "onj-suspected", "Boolean") is True,
                                        findings="\n".join(notes) or None))  # fmt: skip
            return True
        if own == c.BOARD_REVIEW_CODE:
            day = _first_day(res, "performedPeriod.start", "performedDateTime")
            if not day:
                raise _Bad("cancer-board case without a date")
            reasons = [x.get("text") for x in res.get("reasonCode") or [] if isinstance(x, dict) and x.get("text")]
            self.add(r.BoardCaseRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM,
                                       self.patient_ref(res, origin), queued_on=day,
                                       reason=reasons[0] if reasons else None,
                                       decided_on=_first_day(res, "performedPeriod.end"),
                                       decision=(res.get("outcome") or {}).get("text"),
                                       decided_by=c.product_ext(res, "decided-by", "String")))  # fmt: skip
            return True
        return False

    def _sre(self, origin: Origin, res: dict, full_url: str | None, event: str, day: str | None) -> None:
        """A skeletal-related event the product's export wrote on its own (type = its code)."""
        if not day:
            raise _Bad(f"skeletal-related event {event} without a date")
        levels: list[str] = []
        for site in res.get("bodySite") or []:
            levels += [lv for lv in _levels(site) if lv not in levels]
        self.add(r.SkeletalEventRecord(self.source_id(res, full_url), origin, SOURCE_SYSTEM,
                                       self.patient_ref(res, origin), occurred_on=day, event_type=event,
                                       level=levels[0] if levels else None,
                                       emergency=c.product_ext(res, "emergency", "Boolean") is True))  # fmt: skip

    def _product_observation(self, origin: Origin, res: dict, full_url: str | None, record, spec) -> None:
        """The product's ``neuro-status`` / ``metastatic-status`` Observation: one component per known value."""
        values: dict[str, Any] = {}
        for comp in res.get("component") or []:
            field_kind = spec.get(c.product_code(comp.get("code")) or "")
            if field_kind is None:
                continue
            field, kind = field_kind
            if kind == "CodeableConcept":
                values[field] = c.product_code(comp.get("valueCodeableConcept"))
            else:
                values[field] = comp.get(f"value{kind}")
        self.add(record(self.source_id(res, full_url), origin, SOURCE_SYSTEM, self.patient_ref(res, origin),
                        recorded_on=self._when(res), **values))  # fmt: skip

    def _rt_dose(self, res: dict) -> tuple[float | None, int | None]:
        total, fractions = None, None
        for e in _ext(res, "radiotherapy-dose-delivered-to-volume"):
            for sub in e.get("extension") or []:
                if sub.get("url") == "totalDoseDelivered" and isinstance(sub.get("valueQuantity"), dict):
                    q = sub["valueQuantity"]
                    unit = (q.get("code") or q.get("unit") or "").lower()
                    if q.get("value") is not None and unit in ("cgy", "gy"):
                        total = (total or 0) + (q["value"] / 100 if unit == "cgy" else q["value"])
                if sub.get("url") == "fractionsDelivered" and sub.get("valueUnsignedInt") is not None:
                    fractions = max(fractions or 0, sub["valueUnsignedInt"])
        if fractions is None:
            for e in _ext(res, "radiotherapy-sessions"):
                fractions = e.get("valueUnsignedInt")
        return total, fractions

    # -- Imaging -------------------------------------------------------------------
    def imaging_study(self, origin: Origin, res: dict, full_url: str | None) -> None:
        day = _first_day(res, "started")
        if not day:
            raise _Bad("ImagingStudy without a started date")
        modality, region, levels = None, None, []
        for series in res.get("series") or []:
            mod = (series.get("modality") or {}).get("code")
            modality = modality or c.DICOM_MODALITY.get(mod)
            site = series.get("bodySite") or {}
            concept = {"coding": [site], "text": site.get("display")} if site else {}
            levels += [lv for lv in _levels(concept) if lv not in levels]
            region = region or _region(concept)
        for m in res.get("modality") or []:
            modality = modality or c.DICOM_MODALITY.get(m.get("code"))
        text = " ".join([res.get("description") or ""] + [_text_of(p) for p in res.get("procedureCode") or []])
        modality = modality or _modality_text(text)
        if modality is None:
            raise _Bad("ImagingStudy modality is not one the product records (MR, CT, PT, NM, DX/CR)")
        region = region or c.region_from_text(text) or ("whole_spine" if levels else "other")
        region = c.product_ext(res, "imaging-region", "Code") or region  # the product's export: as recorded
        pref = self.patient_ref(res, origin)
        sid = self.source_id(res, full_url)
        self.add(r.ImagingRecord(sid, origin, SOURCE_SYSTEM, pref, performed_on=day, modality=modality,
                                 region=region, findings=(res.get("description") or None)))  # fmt: skip

    def diagnostic_report(self, origin: Origin, res: dict, full_url: str | None) -> None:
        cats = " ".join(cd.get("code") or "" for cat in res.get("category") or [] for cd in _codings(cat))
        code = res.get("code")
        text = " ".join([_text_of(code), res.get("conclusion") or ""])
        bone_scan = any(cd.get("code") in c.BONE_SCAN_CODES for cd in _codings(code))
        modality = "bone_scan" if bone_scan else _modality_text(_text_of(code))
        if "RAD" not in cats.split() and not bone_scan and ("LP29684-5" not in cats):
            raise _Skip("")
        if modality is None:
            raise _Skip("radiology report of a modality the product does not record")
        day = _first_day(res, "effectiveDateTime", "effectivePeriod.start", "issued")
        if not day:
            raise _Bad("DiagnosticReport without an effective date")
        pref = self.patient_ref(res, origin)
        sid = self.source_id(res, full_url)
        levels = c.levels_from_text(res.get("conclusion"))
        region = c.region_from_text(text) or ("whole_spine" if levels or bone_scan else "other")
        self.add(r.ImagingRecord(sid, origin, SOURCE_SYSTEM, pref, performed_on=day, modality=modality,
                                 region=region, findings=(res.get("conclusion") or None)))  # fmt: skip
        mets = any(_code_in(cc, c.SNOMED, c.BONE_METASTASIS_SNOMED) for cc in res.get("conclusionCode") or [])
        if mets:
            for lv in levels:
                self.add(r.LesionRecord(f"{sid}#{lv}", origin, SOURCE_SYSTEM, pref, level=lv, first_seen_on=day))
            if not levels:
                self.add(r.LocomoConditionRecord(f"{sid}#locomo", origin, SOURCE_SYSTEM, pref,
                                                 condition="bone_metastasis", onset_on=day))  # fmt: skip


def _locomo_conditions() -> frozenset[str]:
    from surveillance.locomo import LocomoCondition

    return frozenset(x.value for x in LocomoCondition)


def _surgeries() -> tuple[str, ...]:
    from surveillance.service import TREATMENTS

    return TREATMENTS["surgery"]


def _locomo_details(res: dict) -> dict[str, Any]:
    """Resolution, management plan and orthopaedic review of a Cancer Locomo condition (the product's export)."""
    return {
        "resolved_on": _first_day(res, "abatementDateTime"),
        "management_plan": c.product_ext(res, "management-plan", "String"),
        "orthopaedic_review_on": c.product_ext(res, "orthopaedic-review", "Date"),
    }


def _levels(concept: dict | None) -> list[str]:
    """Vertebral levels of a bodySite CodeableConcept: SNOMED codes of both families, then the text."""
    if not isinstance(concept, dict):
        return []
    out: list[str] = []
    for cd in _codings(concept):
        if (cd.get("system") or "").startswith(c.SNOMED) and cd.get("code") in c.VERTEBRA_BODY_SNOMED:
            lv = c.VERTEBRA_BODY_SNOMED[cd["code"]]
            if lv not in out:
                out.append(lv)
    if not out:
        out = c.levels_from_text(_text_of(concept))
    return out


def _region(concept: dict | None) -> str | None:
    code = _code_in(concept, c.SNOMED, c.SPINE_REGION_SNOMED)
    if code:
        return c.SPINE_REGION_SNOMED[code]
    text = _text_of(concept).lower()
    if "vertebra" in text or "spine" in text or "spinal column" in text:
        return c.region_from_text(text)
    return None


def _modality_text(text: str) -> str | None:
    t = f" {text.lower()} "
    return next((mod for word, mod in c.MODALITY_TEXT if word in t), None)


def parse(name: str, data: bytes) -> ParseResult:
    """Parse one FHIR JSON file (a Bundle or one resource) into import records and issues.

    A document whose structure the parser does not expect (``"entry": true``, a
    list where an object belongs, …) is refused as a whole with one file-level
    issue and no records, rather than a traceback (``tests/test_fuzz_input.py``).
    """
    try:
        return _Parser(name).parse(data)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError, RecursionError) as err:
        where = type(err).__name__
        return ParseResult(issues=[ImportIssue(None, name, "the JSON does not have the structure of a FHIR R4 "
                                                           f"resource or Bundle ({where}); nothing was imported")])


__all__ = ["SOURCE_SYSTEM", "parse"]
