"""Reading one case of the JSON case format (``shared/case-format.md`` v1).

The boundary of the scoring core: a JSON object becomes a typed, immutable
:class:`CaseInput`, or a :class:`CaseError` names the case, the field, what was
wrong and what is allowed.  A missing field and ``null`` both mean *unknown*;
nothing is defaulted.  Unknown field names are refused too, because a typo
("albumin_gdl") would otherwise be read silently as "albumin unknown".

Laboratory values must be plausible in the unit the field name carries; the
limits below are input-sanity limits (a value outside them is almost always a
unit mix-up such as albumin in g/L or calcium in mmol/L), not clinical
thresholds, and they never change a score.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from surveillance.scoring.histology import HistologyMatch, UnknownHistology, normalise_histology
from surveillance.scoring.vocab import (
    LEVEL_ORDER,
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    PrimarySite,
    VisceralStatus,
    allowed,
)


class CaseError(ValueError):
    """A case that cannot be read: names the case, the field and what is allowed."""

    def __init__(self, case_id: str | None, field: str, problem: str, allowed_values: list[str] | None = None):
        self.case_id = case_id
        self.field = field
        self.problem = problem
        self.allowed_values = allowed_values
        where = f"case {case_id!r}" if case_id is not None else "case"
        message = f"{where}, field {field!r}: {problem}"
        if allowed_values:
            message += "; allowed values: " + ", ".join(allowed_values)
        super().__init__(message)


#: Input-sanity limits per laboratory field (inclusive), in the field's unit,
#: with the unit mix-up each lower/upper limit is there to catch.
LAB_LIMITS: dict[str, tuple[float, float, str]] = {
    "albumin_g_dl": (0.5, 7.0, "g/dL (a value in g/L is ten times larger)"),
    "crp_mg_dl": (0.0, 100.0, "mg/dL (a value in mg/L is ten times larger)"),
    "ldh_u_l": (0.0, 20000.0, "U/L"),
    "platelets_per_ul": (1000.0, 3000000.0, "per µL (not ×10³/µL: 240,000 rather than 240)"),
    "calcium_mg_dl": (3.0, 25.0, "mg/dL (a value in mmol/L is four times smaller)"),
    "total_bilirubin_mg_dl": (0.0, 60.0, "mg/dL (a value in µmol/L is seventeen times larger)"),
}

WBB_NUMBERINGS = ("boriani_clockwise", "sosg_counterclockwise")
WBB_LAYERS = ("A", "B", "C", "D", "E")

CASE_FIELDS = (
    "id",
    "primary_site",
    "primary_histology",
    "hormone_dependent",
    "molecular_targeted_therapy",
    "ecog",
    "kps",
    "ambulatory_status",
    "albumin_g_dl",
    "crp_mg_dl",
    "ldh_u_l",
    "platelets_per_ul",
    "calcium_mg_dl",
    "total_bilirubin_mg_dl",
    "previous_chemotherapy",
    "visceral_metastases",
    "brain_metastases",
    "extraspinal_bone_metastases",
    "vertebral_body_metastases",
    "spinal_involvement_single_contiguous_lesion",
    "extraspinal_pathological_fracture",
    "frankel_grade",
    "fit_for_surgery",
    "spinal_lesions",
    "age",
    "sex",
    "clinical_note",
)
LESION_FIELDS = (
    "level",
    "level_span",
    "pain",
    "lesion_type",
    "alignment",
    "collapse",
    "posterolateral",
    "bilsky_escc",
    # Product extensions (documented in docs/scoring.md): WBB staging of the lesion.
    "wbb_zones",
    "wbb_layers",
    "wbb_numbering",
)
VISCERAL_FIELDS = ("status", "treatable", "removable")


@dataclass(frozen=True)
class Visceral:
    status: VisceralStatus | None
    treatable: bool | None
    removable: bool | None


@dataclass(frozen=True)
class LesionInput:
    level: Level
    levels: tuple[Level, ...]  # every level the lesion covers, cranio-caudal, includes ``level``
    pain: Pain | None
    lesion_type: LesionType | None
    alignment: Alignment | None
    collapse: Collapse | None
    posterolateral: Posterolateral | None
    bilsky_escc: BilskyGrade | None
    wbb_zones: tuple[int, ...] | None = None
    wbb_layers: tuple[str, ...] | None = None
    wbb_numbering: str | None = None


@dataclass(frozen=True)
class CaseInput:
    id: str | None
    primary_site: PrimarySite | None
    primary_histology: str | None
    histology: HistologyMatch | None  # how the site(s) were resolved; None when unknown
    hormone_dependent: bool | None
    molecular_targeted_therapy: bool | None
    ecog: int | None
    kps: int | None
    ambulatory_status: Ambulation | None
    albumin_g_dl: float | None
    crp_mg_dl: float | None
    ldh_u_l: float | None
    platelets_per_ul: float | None
    calcium_mg_dl: float | None
    total_bilirubin_mg_dl: float | None
    previous_chemotherapy: bool | None
    visceral: Visceral
    brain_metastases: bool | None
    extraspinal_bone_metastases: int | None
    vertebral_body_metastases: int | None
    spinal_involvement_single_contiguous_lesion: bool | None
    extraspinal_pathological_fracture: bool | None
    frankel_grade: Frankel | None
    fit_for_surgery: bool | None
    spinal_lesions: tuple[LesionInput, ...]
    age: float | None = None
    sex: str | None = None
    clinical_note: str | None = None

    @property
    def sites(self) -> tuple[PrimarySite, ...]:
        """Candidate primary sites: one, several for a family term, none when unknown."""
        return self.histology.sites if self.histology else ()


class _Reader:
    """Validates fields of one JSON object, naming the case in every error."""

    def __init__(self, case_id: str | None, obj: Mapping[str, Any], prefix: str = ""):
        self.case_id = case_id
        self.obj = obj
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def fail(self, key: str, problem: str, allowed_values: list[str] | None = None) -> CaseError:
        return CaseError(self.case_id, self.name(key), problem, allowed_values)

    def check_keys(self, known: tuple[str, ...]) -> None:
        unknown = self.obj.keys() - frozenset(known)
        if unknown:
            key = sorted(map(str, unknown))[0]
            raise self.fail(key, "is not a field of the case format", list(known))

    def raw(self, key: str) -> Any:
        return self.obj.get(key)

    def enum(self, key: str, enum: type[StrEnum]) -> Any:
        value = self.obj.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, f"{value!r} must be a string", allowed(enum))
        try:
            return enum(value)
        except ValueError:
            raise self.fail(key, f"{value!r} is not an allowed value", allowed(enum)) from None

    def boolean(self, key: str) -> bool | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        raise self.fail(key, f"{value!r} must be true, false or null", ["true", "false", "null"])

    def integer(self, key: str, low: int, high: int | None = None, step: int = 1) -> int | None:
        value = self.obj.get(key)
        if value is None:
            return None
        span = f"{low}–{high}" if high is not None else f"≥ {low}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"{value!r} must be a whole number ({span})")
        if value < low or (high is not None and value > high) or (value - low) % step:
            multiple = f", a multiple of {step}" if step > 1 else ""
            raise self.fail(key, f"{value} is out of range: allowed {span}{multiple}")
        return value

    def number(self, key: str, low: float, high: float, unit: str) -> float | None:
        value = self.obj.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"{value!r} must be a number in {unit}")
        if not low <= value <= high:
            raise self.fail(key, f"{value} is outside the plausible range {low:g}–{high:g} {unit}")
        return float(value)

    def text(self, key: str) -> str | None:
        value = self.obj.get(key)
        if value is None or isinstance(value, str):
            return value
        raise self.fail(key, f"{value!r} must be a string")


def _read_lesion(case_id: str | None, index: int, obj: Any) -> LesionInput:
    prefix = f"spinal_lesions[{index}]."
    if not isinstance(obj, Mapping):
        raise CaseError(case_id, f"spinal_lesions[{index}]", "must be an object with at least a 'level'")
    r = _Reader(case_id, obj, prefix)
    r.check_keys(LESION_FIELDS)
    level = r.enum("level", Level)
    if level is None:
        raise r.fail("level", "is required", allowed(Level))
    span_raw = r.raw("level_span")
    levels = {level}
    if span_raw is not None:
        if not isinstance(span_raw, list) or not span_raw:
            raise r.fail("level_span", "must be a non-empty list of levels", allowed(Level))
        for j, item in enumerate(span_raw):
            if not isinstance(item, str) or item not in Level._value2member_map_:
                raise CaseError(case_id, f"{prefix}level_span[{j}]", f"{item!r} is not a level", allowed(Level))
            levels.add(Level(item))
    ordered = tuple(sorted(levels, key=LEVEL_ORDER.__getitem__))
    positions = [LEVEL_ORDER[lv] for lv in ordered]
    if positions[-1] - positions[0] != len(positions) - 1:
        raise r.fail(
            "level_span",
            "levels " + ", ".join(ordered) + " (with 'level') are not contiguous; record separate lesions",
        )
    zones = r.raw("wbb_zones")
    wbb_zones = None
    if zones is not None:
        if (
            not isinstance(zones, list)
            or not zones
            or any(isinstance(z, bool) or not isinstance(z, int) or not 1 <= z <= 12 for z in zones)
        ):
            raise r.fail("wbb_zones", f"{zones!r} must be a non-empty list of zone numbers 1–12")
        wbb_zones = tuple(sorted(set(zones)))
    layers = r.raw("wbb_layers")
    wbb_layers = None
    if layers is not None:
        if not isinstance(layers, list) or not layers or any(x not in WBB_LAYERS for x in layers):
            raise r.fail("wbb_layers", f"{layers!r} must be a non-empty list of layers", list(WBB_LAYERS))
        wbb_layers = tuple(sorted(set(layers)))
    numbering = r.raw("wbb_numbering")
    if numbering is not None and numbering not in WBB_NUMBERINGS:
        raise r.fail("wbb_numbering", f"{numbering!r} is not an allowed value", list(WBB_NUMBERINGS))
    if wbb_zones is not None and numbering is None:
        raise r.fail(
            "wbb_numbering",
            "is required with wbb_zones: the original (clockwise) and SOSG (counter-clockwise) numberings differ",
            list(WBB_NUMBERINGS),
        )
    return LesionInput(
        level=level,
        levels=ordered,
        pain=r.enum("pain", Pain),
        lesion_type=r.enum("lesion_type", LesionType),
        alignment=r.enum("alignment", Alignment),
        collapse=r.enum("collapse", Collapse),
        posterolateral=r.enum("posterolateral", Posterolateral),
        bilsky_escc=r.enum("bilsky_escc", BilskyGrade),
        wbb_zones=wbb_zones,
        wbb_layers=wbb_layers,
        wbb_numbering=numbering,
    )


def _resolve_histology(r: _Reader, site: PrimarySite | None, text: str | None) -> HistologyMatch | None:
    if site is not None:
        return HistologyMatch(sites=(site,), matched_term=site.value, source="code")
    if text is None or not text.strip():
        return None
    try:
        return normalise_histology(text)
    except UnknownHistology as err:
        raise r.fail(
            "primary_histology",
            f"{text!r} could not be mapped to a primary site; give primary_site or a clearer histology",
            err.suggestions,
        ) from None


def parse_case(obj: Any, *, case_id: str | None = None, label: str | None = None) -> CaseInput:
    """Validate one case object and return it typed; raise :class:`CaseError`.

    ``case_id`` (the id of a ``{"cases": [...]}`` entry) overrides the case's own
    ``id``; ``label`` (e.g. "#3") names an id-less case in error messages only.
    """
    if not isinstance(obj, Mapping):
        raise CaseError(case_id or label, "(case)", f"must be a JSON object, not {type(obj).__name__}")
    raw_id = case_id if case_id is not None else obj.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise CaseError(label, "id", f"{raw_id!r} must be a string")
    cid = None if raw_id is None else str(raw_id)
    r = _Reader(cid if cid is not None else label, obj)
    r.check_keys(CASE_FIELDS)

    site = r.enum("primary_site", PrimarySite)
    histology_text = r.text("primary_histology")
    histology = _resolve_histology(r, site, histology_text)

    visceral_raw = obj.get("visceral_metastases")
    if visceral_raw is None:
        visceral = Visceral(None, None, None)
    elif isinstance(visceral_raw, Mapping):
        vr = _Reader(cid, visceral_raw, "visceral_metastases.")
        vr.check_keys(VISCERAL_FIELDS)
        visceral = Visceral(vr.enum("status", VisceralStatus), vr.boolean("treatable"), vr.boolean("removable"))
    else:
        raise r.fail("visceral_metastases", "must be an object {status, treatable, removable} or null")

    lesions_raw = obj.get("spinal_lesions")
    if lesions_raw is None:
        raise r.fail("spinal_lesions", "is required (it may be an empty list)")
    if not isinstance(lesions_raw, list):
        raise r.fail("spinal_lesions", "must be a list of lesions")
    lesions = tuple(_read_lesion(cid, i, lesion) for i, lesion in enumerate(lesions_raw))

    labs = {key: r.number(key, low, high, unit) for key, (low, high, unit) in LAB_LIMITS.items()}
    age = r.number("age", 0, 125, "years")
    return CaseInput(
        id=cid,
        primary_site=site,
        primary_histology=histology_text,
        histology=histology,
        hormone_dependent=r.boolean("hormone_dependent"),
        molecular_targeted_therapy=r.boolean("molecular_targeted_therapy"),
        ecog=r.integer("ecog", 0, 4),
        kps=r.integer("kps", 10, 100, step=10),
        ambulatory_status=r.enum("ambulatory_status", Ambulation),
        previous_chemotherapy=r.boolean("previous_chemotherapy"),
        visceral=visceral,
        brain_metastases=r.boolean("brain_metastases"),
        extraspinal_bone_metastases=r.integer("extraspinal_bone_metastases", 0),
        vertebral_body_metastases=r.integer("vertebral_body_metastases", 1),
        spinal_involvement_single_contiguous_lesion=r.boolean("spinal_involvement_single_contiguous_lesion"),
        extraspinal_pathological_fracture=r.boolean("extraspinal_pathological_fracture"),
        frankel_grade=r.enum("frankel_grade", Frankel),
        fit_for_surgery=r.boolean("fit_for_surgery"),
        spinal_lesions=lesions,
        age=age,
        sex=r.text("sex"),
        clinical_note=r.text("clinical_note"),
        **labs,
    )
