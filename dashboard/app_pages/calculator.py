"""Calculator: one patient typed in, scored by the pipeline's own engine (``score_case``); nothing is stored.

Every field of the case format (``shared/case-format.md`` v1) has an input;
"unknown" is a choice of every select and an empty number, and unknown is sent
to the engine as ``null`` — never as 0.  The engine validates the case
(``parse_case``): what it refuses is shown next to the field it names.
"""

import json

import streamlit as st

from dashboard.components.page import page_guard
from dashboard.components.score_panel import score_panel
from surveillance.access import Action
from surveillance.scoring import CaseError, score_case
from surveillance.scoring.case import WBB_LAYERS, WBB_NUMBERINGS
from surveillance.scoring.histology import UnknownHistology, normalise_histology
from surveillance.scoring.vocab import (
    LEVEL_ORDER,
    PRIMARY_SITE_LABELS,
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

identity, tr = page_guard(Action.USE_CALCULATOR)
st.title(tr.t("calculator.title"))
st.caption(tr.t("calculator.subtitle"))

PREFIX = "calc_"
LESIONS_KEY = "calc_lesion_ids"
NEXT_KEY = "calc_next_lesion"
#: Where a field's error goes: a placeholder under its input (filled after scoring), by the engine's field name.
slots: dict = {}


def _unknown(value, fmt=str) -> str:
    return tr.t("calculator.unknown") if value is None else fmt(value)


def choice(col, field: str, options: list, *, label: str | None = None, fmt=str, key: str | None = None):
    """A select whose first option is "unknown" (None)."""
    value = col.selectbox(label or tr.t(f"calculator.f_{field}"), [None, *options],
                          format_func=lambda v: _unknown(v, fmt), key=key or PREFIX + field)
    slots[field] = col.empty()
    return value


def flag(col, field: str, *, label: str | None = None, key: str | None = None):
    """Yes / no / unknown."""
    return choice(col, field, [True, False], label=label, key=key,
                  fmt=lambda v: tr.t("calculator.yes") if v else tr.t("calculator.no"))


def number(col, field: str, *, step: float | int, fmt: str | None = None):
    """A number that may be left empty (= unknown); the engine checks the range and the unit."""
    value = col.number_input(tr.t(f"calculator.f_{field}"), value=None, step=step, format=fmt,
                             placeholder=tr.t("calculator.unknown"), key=PREFIX + field)
    slots[field] = col.empty()
    return value


def _add_lesion() -> None:
    ids = st.session_state.setdefault(LESIONS_KEY, [])
    ids.append(st.session_state.get(NEXT_KEY, 0))
    st.session_state[NEXT_KEY] = ids[-1] + 1


def _remove_lesion(lesion_id: int) -> None:
    st.session_state[LESIONS_KEY] = [i for i in st.session_state.get(LESIONS_KEY, []) if i != lesion_id]


def _span(first: str, last: str | None) -> list[str] | None:
    """Every level from ``first`` to ``last`` (either order), or None for a single level."""
    if last is None or last == first:
        return None
    lo, hi = sorted((LEVEL_ORDER[Level(first)], LEVEL_ORDER[Level(last)]))
    return [lv.value for lv, i in LEVEL_ORDER.items() if lo <= i <= hi]


def _site_label(code: str) -> str:
    return f"{PRIMARY_SITE_LABELS[PrimarySite(code)]} ({code})"


levels = allowed(Level)
case: dict = {}

# --- Patient and primary ------------------------------------------------------------------------
st.subheader(tr.t("calculator.section_patient"))
cols = st.columns(4)
case["id"] = cols[0].text_input(tr.t("calculator.f_id"), key=PREFIX + "id", help=tr.t("calculator.id_help")) or None
slots["id"] = cols[0].empty()
case["age"] = number(cols[1], "age", step=1)
case["sex"] = choice(cols[2], "sex", ["F", "M"])
mode = cols[3].radio(tr.t("calculator.primary_mode"), ["code", "text"], key=PREFIX + "primary_mode",
                     format_func=lambda v: tr.t(f"calculator.primary_mode_{v}"), horizontal=True)
cols = st.columns(4)
if mode == "code":
    case["primary_site"] = choice(cols[0], "primary_site", allowed(PrimarySite), fmt=_site_label)
    case["primary_histology"] = None
else:
    text_value = cols[0].text_input(tr.t("calculator.f_primary_histology"), key=PREFIX + "primary_histology",
                                    placeholder=tr.t("calculator.histology_placeholder"))
    slots["primary_histology"] = cols[0].empty()
    case["primary_site"] = None
    case["primary_histology"] = text_value.strip() or None
    if case["primary_histology"]:
        try:
            match = normalise_histology(case["primary_histology"])
        except UnknownHistology as err:
            cols[0].error(tr.t("calculator.histology_unknown", reason=err.reason,
                               nearest=", ".join(err.suggestions) or "—"))
        else:
            cols[0].success(tr.t("calculator.histology_mapped", sites=", ".join(match.sites),
                                 matched=match.matched_term, source=match.source))
            if match.note:
                cols[0].caption(match.note)
case["hormone_dependent"] = flag(cols[1], "hormone_dependent")
case["molecular_targeted_therapy"] = flag(cols[2], "molecular_targeted_therapy")
case["previous_chemotherapy"] = flag(cols[3], "previous_chemotherapy")

# --- Performance, neurology and fitness ---------------------------------------------------------
st.subheader(tr.t("calculator.section_performance"))
cols = st.columns(5)
case["ecog"] = choice(cols[0], "ecog", [0, 1, 2, 3, 4])
case["kps"] = choice(cols[1], "kps", list(range(100, 0, -10)))
case["ambulatory_status"] = choice(cols[2], "ambulatory_status", allowed(Ambulation),
                                   fmt=lambda v: tr.t(f"calculator.ambulation_{v}"))
case["frankel_grade"] = choice(cols[3], "frankel_grade", allowed(Frankel))
case["fit_for_surgery"] = flag(cols[4], "fit_for_surgery")

# --- Metastatic disease -------------------------------------------------------------------------
st.subheader(tr.t("calculator.section_metastases"))
cols = st.columns(4)
visceral = {
    "status": choice(cols[0], "visceral_metastases.status", allowed(VisceralStatus),
                     label=tr.t("calculator.f_visceral_status"), key=PREFIX + "visceral_status",
                     fmt=lambda v: tr.t(f"calculator.visceral_{v}")),
    "treatable": flag(cols[1], "visceral_metastases.treatable", label=tr.t("calculator.f_visceral_treatable"),
                      key=PREFIX + "visceral_treatable"),
    "removable": flag(cols[2], "visceral_metastases.removable", label=tr.t("calculator.f_visceral_removable"),
                      key=PREFIX + "visceral_removable"),
}
case["visceral_metastases"] = visceral
case["brain_metastases"] = flag(cols[3], "brain_metastases")
cols = st.columns(4)
case["extraspinal_bone_metastases"] = number(cols[0], "extraspinal_bone_metastases", step=1)
case["vertebral_body_metastases"] = number(cols[1], "vertebral_body_metastases", step=1)
case["spinal_involvement_single_contiguous_lesion"] = flag(cols[2], "spinal_involvement_single_contiguous_lesion")
case["extraspinal_pathological_fracture"] = flag(cols[3], "extraspinal_pathological_fracture")

# --- Laboratory ---------------------------------------------------------------------------------
st.subheader(tr.t("calculator.section_labs"))
cols = st.columns(3)  # three a row: six in one row cut a platelet count of 250000 to "25000"
case["albumin_g_dl"] = number(cols[0], "albumin_g_dl", step=0.1, fmt="%.2f")
case["crp_mg_dl"] = number(cols[1], "crp_mg_dl", step=0.1, fmt="%.2f")
case["ldh_u_l"] = number(cols[2], "ldh_u_l", step=1.0, fmt="%.0f")
cols = st.columns(3)
case["platelets_per_ul"] = number(cols[0], "platelets_per_ul", step=1000.0, fmt="%.0f")
case["calcium_mg_dl"] = number(cols[1], "calcium_mg_dl", step=0.1, fmt="%.2f")
case["total_bilirubin_mg_dl"] = number(cols[2], "total_bilirubin_mg_dl", step=0.1, fmt="%.2f")
st.caption(tr.t("calculator.labs_hint"))

# --- Spinal lesions -----------------------------------------------------------------------------
st.subheader(tr.t("calculator.section_lesions"))
lesions = []
for index, lesion_id in enumerate(st.session_state.setdefault(LESIONS_KEY, [])):
    key = f"{PREFIX}l{lesion_id}_"
    field = f"spinal_lesions[{index}]."
    with st.container(border=True):
        head = st.columns([6, 1])
        head[0].markdown(f"**{tr.t('calculator.lesion', n=index + 1)}**")
        head[1].button(tr.t("calculator.remove_lesion"), key=key + "remove", on_click=_remove_lesion,
                       args=(lesion_id,))
        cols = st.columns(4)
        level = cols[0].selectbox(tr.t("calculator.f_level"), levels, index=None, key=key + "level",
                                  placeholder=tr.t("calculator.choose_level"))
        slots[field + "level"] = cols[0].empty()
        span_end = cols[1].selectbox(tr.t("calculator.f_level_span"), [None, *levels], key=key + "span",
                                     format_func=lambda v: tr.t("calculator.single_level") if v is None else v)
        slots[field + "level_span"] = cols[1].empty()
        entry: dict = {"level": level}
        span = _span(level, span_end) if level else None
        if span:
            entry["level_span"] = span
        entry["bilsky_escc"] = choice(cols[2], field + "bilsky_escc", allowed(BilskyGrade),
                                      label=tr.t("calculator.f_bilsky_escc"), key=key + "bilsky")
        cols = st.columns(5)
        for col, name, vocab in zip(cols, ("pain", "lesion_type", "alignment", "collapse", "posterolateral"),
                                    (Pain, LesionType, Alignment, Collapse, Posterolateral), strict=True):
            entry[name] = choice(col, field + name, allowed(vocab), label=tr.t(f"calculator.f_{name}"),
                                 key=key + name, fmt=lambda v, n=name: tr.t(f"calculator.{n}_{v}"))
        with st.expander(tr.t("calculator.wbb")):
            wcols = st.columns(3)
            zones = wcols[0].multiselect(tr.t("calculator.f_wbb_zones"), list(range(1, 13)), key=key + "wbb_zones")
            slots[field + "wbb_zones"] = wcols[0].empty()
            layers = wcols[1].multiselect(tr.t("calculator.f_wbb_layers"), list(WBB_LAYERS), key=key + "wbb_layers")
            slots[field + "wbb_layers"] = wcols[1].empty()
            numbering = choice(wcols[2], field + "wbb_numbering", list(WBB_NUMBERINGS),
                               label=tr.t("calculator.f_wbb_numbering"), key=key + "wbb_numbering",
                               fmt=lambda v: tr.t(f"calculator.numbering_{v}"))
            if zones:
                entry["wbb_zones"] = zones
            if layers:
                entry["wbb_layers"] = layers
            if numbering:
                entry["wbb_numbering"] = numbering
    lesions.append(entry)
st.button(tr.t("calculator.add_lesion"), key=PREFIX + "add_lesion", on_click=_add_lesion)
case["spinal_lesions"] = lesions

case["clinical_note"] = st.text_area(tr.t("calculator.f_clinical_note"), key=PREFIX + "clinical_note",
                                     help=tr.t("calculator.note_help")) or None

# --- Result -------------------------------------------------------------------------------------
st.divider()
st.header(tr.t("calculator.result"))
st.caption(tr.t("calculator.nothing_stored"))
try:
    result = score_case(case)
except CaseError as err:
    message = tr.t("calculator.case_error", field=err.field, problem=err.problem)
    if err.allowed_values:
        message += " " + tr.t("calculator.allowed", values=", ".join(err.allowed_values))
    if err.field in slots:
        slots[err.field].error(message)
    st.error(message)
    result = None

if result is not None:
    score_panel(result, tr)
    with st.expander(tr.t("calculator.json")):  # for the command line and integrations, not for reading
        st.json(result, expanded=True)
    cols = st.columns(2)
    cols[0].download_button(tr.t("calculator.download_result"),
                            json.dumps(result, ensure_ascii=False, indent=2, default=str).encode("utf-8"),
                            file_name="score-result.json", mime="application/json", key=PREFIX + "download_result",
                            on_click="ignore")
    cols[1].download_button(tr.t("calculator.download_case"),
                            json.dumps(case, ensure_ascii=False, indent=2, default=str).encode("utf-8"),
                            file_name="case.json", mime="application/json", key=PREFIX + "download_case",
                            on_click="ignore")
    st.caption(tr.t("calculator.cli_hint"))
