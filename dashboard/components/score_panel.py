"""The score panel: every instrument of a ``score_case`` result, with its reasoning.

Shared by the patient page and the cancer-board page.  It renders what the
engine returned and computes nothing clinical itself: possible totals as
"8, 9 or 11", the band and its published meaning (or every band still
reachable), points per component, what is missing, the explanation, the
citation and the table version.  Unknown is always shown as unknown, never as
0.  The explanations, component labels and band meanings are the engine's own
(English) text; everything around them comes from the locale files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd
import streamlit as st

from dashboard.i18n import Translator
from surveillance.scoring import get_instrument

#: The patient-level point scores of a result, in display order.
SYSTEMS = ("tomita", "revised_tokuhashi", "bauer", "modified_bauer", "nesms", "new_katagiri")
LMNOP_DOMAINS = ("location", "mechanical", "neurology", "oncology", "patient")


# ---------------------------------------------------------------------------
# Formatting (pure: the board page and the tests may use these)
# ---------------------------------------------------------------------------


def or_list(values: Iterable[Any], tr: Translator) -> str:
    """``[8, 9, 11]`` as "8, 9 or 11" in the user's language."""
    items = [str(v) for v in values]
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    return tr.t("scores.or_list", head=tr.t("scores.list_separator").join(items[:-1]), last=items[-1])


def totals_text(totals: list[int] | tuple[int, ...], tr: Translator) -> str:
    """The possible totals, or "unknown (cannot be computed)" when there are none — never 0."""
    return or_list(totals, tr) if totals else tr.t("scores.not_computable")


def value_text(value: Any, tr: Translator) -> str:
    if value is None or value == "" or value == []:
        return tr.t("app.unknown")
    if isinstance(value, bool):
        return tr.t("scores.yes") if value else tr.t("scores.no")
    if isinstance(value, (list, tuple)):
        return ", ".join(value_text(v, tr) for v in value)
    return str(value)


def points_text(component: dict[str, Any], tr: Translator) -> str:
    """A component's points, or "unknown: 0, 2 or 4" while its input is unknown."""
    if component.get("points") is not None:
        return str(component["points"])
    possible = component.get("possible_points") or []
    return tr.t("scores.unknown_points", possible=or_list(possible, tr)) if possible else tr.t("app.unknown")


def band_text(system: str, result: dict[str, Any], tr: Translator) -> tuple[str, str]:
    """(band, meaning): the band when every possible total falls in one; else every band still reachable."""
    totals = result.get("possible_totals") or []
    if not totals:
        return tr.t("app.unknown"), ""
    if result.get("band"):
        return str(result["band"]), str(result.get("band_meaning") or "")
    table = get_instrument(system).table
    reachable: list[str] = []
    for total in totals:
        code = table.band_for(total)
        if code not in reachable:
            reachable.append(code)
    meanings = "; ".join(f"{code}: {table.band(code).meaning}" for code in reachable)
    return tr.t("scores.band_undetermined", bands=or_list(reachable, tr)), meanings


def noms_text(lesion: dict[str, Any], tr: Translator) -> str:
    """A lesion's NOMS recommendation, the candidates still reachable, or unknown (no default)."""
    if lesion.get("recommendation"):
        return str(lesion["recommendation"])
    candidates = lesion.get("candidates") or []
    return tr.t("scores.candidates", candidates=or_list(candidates, tr)) if candidates else tr.t("app.unknown")


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows).astype(str) if rows else pd.DataFrame()


#: A row tall enough for three lines: Streamlit wraps cell text only above 4rem (64 px).
WRAPPED_ROW_HEIGHT = 66


def _table(rows: list[dict[str, Any]], widths: dict[str, int | str] | None = None) -> None:
    """A score table; when a cell is too long for one line its rows grow to three wrapped lines, not a cut."""
    frame = _frame(rows)
    longest = max((len(str(v)) for row in rows for v in row.values()), default=0)
    config = {name: st.column_config.Column(width=width) for name, width in (widths or {}).items()}
    if longest > 60:  # the automatic height assumes one-line rows: give the taller rows their room
        st.dataframe(frame, hide_index=True, width="stretch", column_config=config or None,
                     row_height=WRAPPED_ROW_HEIGHT, height=40 + WRAPPED_ROW_HEIGHT * len(frame))
    else:
        st.dataframe(frame, hide_index=True, width="stretch", column_config=config or None)


def _cell(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Rows as a Markdown table: one text element, far cheaper to render than a dataframe."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def _components(components: dict[str, dict[str, Any]], tr: Translator) -> None:
    """Points per component (inside an expander): a Markdown table."""
    st.markdown(markdown_table([
        {
            tr.t("scores.col_component"): c.get("label", key),
            tr.t("scores.col_value"): value_text(c.get("value"), tr),
            tr.t("scores.col_points"): points_text(c, tr),
            tr.t("scores.col_note"): c.get("note", ""),
        }
        for key, c in components.items()
    ]))


def _provenance(body: dict[str, Any], tr: Translator) -> None:
    st.caption(tr.t("scores.citation", citation=body.get("citation", "—"), version=body.get("table_version", "—")))


def _missing(body: dict[str, Any], tr: Translator) -> None:
    missing = body.get("missing") or []
    if missing:
        st.markdown(f"**{tr.t('scores.missing')}:** " + "; ".join(map(str, missing)))
    for note in body.get("ambiguities") or []:
        st.caption(f"{tr.t('scores.ambiguity')}: {note}")


# ---------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------


def _systems(result: dict[str, Any], tr: Translator) -> None:
    st.markdown(f"#### {tr.t('scores.systems')}")
    rows = []
    for system in SYSTEMS:
        body = result.get(system) or {}
        band, meaning = band_text(system, body, tr)
        rows.append({
            tr.t("scores.col_instrument"): tr.t(f"scores.name_{system}"),
            tr.t("scores.col_possible"): totals_text(body.get("possible_totals") or [], tr),
            tr.t("scores.col_band"): band,
            tr.t("scores.col_meaning"): meaning,
            tr.t("scores.col_missing"): "; ".join(map(str, body.get("missing") or [])) or "—",
        })
    _table(rows, {tr.t("scores.col_instrument"): 130, tr.t("scores.col_possible"): 140,
                  tr.t("scores.col_band"): 140, tr.t("scores.col_meaning"): "large",
                  tr.t("scores.col_missing"): "medium"})
    for system in SYSTEMS:
        body = result.get(system) or {}
        title = f"{tr.t(f'scores.name_{system}')} — {totals_text(body.get('possible_totals') or [], tr)}"
        with st.expander(title):
            band, meaning = band_text(system, body, tr)
            st.markdown(f"**{tr.t('scores.possible_totals')}:** {totals_text(body.get('possible_totals') or [], tr)}"
                        f" · **{tr.t('scores.col_band')}:** {band}")
            if meaning:
                st.caption(meaning)
            st.markdown(f"**{tr.t('scores.explanation')}:** {body.get('explanation', '')}")
            if body.get("components"):
                _components(body["components"], tr)
            _missing(body, tr)
            _provenance(body, tr)


def _sins(result: dict[str, Any], tr: Translator) -> None:
    lesions = result.get("sins") or []
    st.markdown(f"#### {tr.t('scores.sins_title')}")
    if not lesions:
        st.caption(tr.t("scores.no_lesions"))
        return
    rows = []
    for lesion in lesions:
        category = lesion.get("category")
        rows.append({
            tr.t("scores.col_level"): "–".join(lesion.get("level_span") or [lesion["level"]]),
            tr.t("scores.col_possible"): totals_text(lesion.get("possible_totals") or [], tr),
            tr.t("scores.col_category"): tr.t(f"scores.sins_{category}") if category else
            tr.t("scores.band_undetermined", bands=or_list(
                [tr.t(f"scores.sins_{c}") for c in _sins_reachable(lesion)], tr)),
            tr.t("scores.col_sins10"): tr.t(f"scores.sins10_{lesion.get('sins_ge_10', 'no')}"),
            tr.t("scores.col_missing"): "; ".join(map(str, lesion.get("missing") or [])) or "—",
        })
    _table(rows)
    for lesion in lesions:
        level = "–".join(lesion.get("level_span") or [lesion["level"]])
        with st.expander(f"SINS {level} — {totals_text(lesion.get('possible_totals') or [], tr)}"):
            if lesion.get("category_meaning"):
                st.caption(lesion["category_meaning"])
            st.markdown(f"**{tr.t('scores.explanation')}:** {lesion.get('explanation', '')}")
            _components(lesion.get("components") or {}, tr)
            _missing(lesion, tr)
            _provenance(lesion, tr)


def _sins_reachable(lesion: dict[str, Any]) -> list[str]:
    table = get_instrument("sins").table
    out: list[str] = []
    for total in lesion.get("possible_totals") or []:
        code = table.band_for(total)
        if code not in out:
            out.append(code)
    return out


def _noms(result: dict[str, Any], tr: Translator) -> None:
    lesions = result.get("noms") or []
    st.markdown(f"#### {tr.t('scores.noms_title')}")
    if not lesions:
        st.caption(tr.t("scores.no_lesions"))
        return
    bilsky = {b["level"]: b for b in result.get("bilsky") or []}
    rows = []
    for lesion in lesions:
        grade = bilsky.get(lesion["level"], {})
        rows.append({
            tr.t("scores.col_level"): lesion["level"],
            tr.t("scores.col_bilsky"): value_text(grade.get("grade"), tr)
            + (f" ({', '.join(grade['groups'])})" if grade.get("groups") else ""),
            tr.t("scores.col_recommendation"): noms_text(lesion, tr),
            tr.t("scores.col_flags"): "; ".join(
                (lesion.get("flag_meanings") or {}).get(f, f) for f in lesion.get("flags") or []) or "—",
            tr.t("scores.col_missing"): "; ".join(map(str, (lesion.get("missing") or []) + (lesion.get("notes") or [])))
            or "—",
        })
    _table(rows, {tr.t("scores.col_level"): 70, tr.t("scores.col_bilsky"): 140,
                  tr.t("scores.col_recommendation"): 170, tr.t("scores.col_flags"): "large",
                  tr.t("scores.col_missing"): "medium"})
    with st.expander(tr.t("scores.noms_details")):
        for lesion in lesions:
            st.markdown(f"**{lesion['level']}** — {lesion.get('explanation', '')}")
        _provenance(lesions[0], tr)
        grades = result.get("bilsky") or []
        if grades:
            _provenance(grades[0], tr)


def _performance(result: dict[str, Any], tr: Translator) -> None:
    ps = result.get("performance_status") or {}
    st.markdown(f"#### {tr.t('scores.performance_title')}")
    parts = [f"ECOG: {value_text(ps.get('ecog'), tr)}", f"KPS: {value_text(ps.get('kps'), tr)}"]
    if ps.get("ecog_converted_from_kps") is not None:
        parts.append(tr.t("scores.ecog_from_kps", ecog=ps["ecog_converted_from_kps"]))
    if ps.get("kps_range_converted_from_ecog"):
        parts.append(tr.t("scores.kps_from_ecog", kps=or_list(ps["kps_range_converted_from_ecog"], tr)))
    st.markdown(" · ".join(parts))


def _lmnop(result: dict[str, Any], tr: Translator) -> None:
    body = result.get("lmnop")
    if not body:
        return
    st.markdown(f"#### {tr.t('scores.lmnop_title')}")
    rows = []
    for domain in LMNOP_DOMAINS:
        part = body.get(domain) or {}
        facts = "; ".join(f"{_label(f'scores.lmnop_fact.{k}', k, tr)}: {_lmnop_value(k, v, tr)}"
                          for k, v in part.items() if k != "rule")
        rows.append({
            tr.t("scores.col_domain"): tr.t(f"scores.lmnop_{domain}"),
            tr.t("scores.col_findings"): facts or "—",
            tr.t("scores.col_consideration"): part.get("rule") or "—",
        })
    st.markdown(markdown_table(rows))
    st.caption(tr.t("scores.not_a_score"))
    _provenance(body, tr)


def _lmnop_value(key: str, value: Any, tr: Translator) -> str:
    """An LMNOP finding in words: category and radiosensitivity codes translated, blocks as "T6–T7, L4"."""
    if key == "worst_sins_category" and isinstance(value, list) and value:
        return ", ".join(_label(f"scores.sins_{c}", c, tr) for c in value)
    if key == "radiosensitivity" and isinstance(value, list) and value:
        return ", ".join(_label(f"scores.radio_{c}", c, tr) for c in value)
    if key == "contiguous_blocks" and isinstance(value, list) and value:
        return ", ".join("–".join([block[0], block[-1]]) if len(block) > 1 else str(block[0])
                         for block in value if block)
    return value_text(value, tr)


def _tes(result: dict[str, Any], tr: Translator) -> None:
    body = result.get("tes_screen")
    if not body:
        return
    st.markdown(f"#### {tr.t('scores.tes_title')}: {_status(body.get('result'), tr)}")
    rows = [
        {tr.t("scores.col_criterion"): _label(f"scores.tes_{name}", name, tr),
         tr.t("scores.col_status"): _status(state, tr)}
        for name, state in (body.get("criteria") or {}).items()
    ]
    st.markdown(markdown_table(rows))
    if body.get("note"):
        st.caption(body["note"])
    _provenance(body, tr)


def _wbb(result: dict[str, Any], tr: Translator) -> None:
    entries = result.get("wbb") or []
    if not entries:
        return
    st.markdown(f"#### {tr.t('scores.wbb_title')}")
    for entry in entries:
        rows = [{tr.t("scores.col_procedure"): o.get("procedure", ""), tr.t("scores.col_zones"): o.get("zones", ""),
                 tr.t("scores.col_note"): o.get("note", ""), tr.t("scores.col_source"): o.get("source", "")}
                for o in entry.get("options") or []]
        st.markdown(f"**{entry['level']}** — {tr.t('scores.wbb_zones', zones=value_text(entry.get('zones_original_numbering'), tr))}")
        if rows:
            st.markdown(markdown_table(rows))
        for note in entry.get("notes") or []:
            st.caption(str(note))
        _provenance(entry, tr)


def _label(key: str, fallback: str, tr: Translator) -> str:
    try:
        return tr.t(key)
    except KeyError:
        return fallback.replace("_", " ")


def _status(state: Any, tr: Translator) -> str:
    return _label(f"scores.status_{state}", str(state), tr) if state is not None else tr.t("app.unknown")


# ---------------------------------------------------------------------------
# Public
# ---------------------------------------------------------------------------


def score_panel(result: dict, tr: Translator) -> None:
    """Render every instrument of one ``score_case`` result."""
    st.caption(tr.t("scores.engine_note", version=result.get("engine_version", "?"), schema=result.get("schema", "?")))
    resolution = result.get("histology_resolution") or {}
    candidates = result.get("primary_site_candidates") or []
    if not candidates:
        st.warning(tr.t("scores.site_unknown"))
    elif len(candidates) > 1 or resolution.get("note"):
        st.info(tr.t("scores.site_candidates", sites=or_list(candidates, tr), note=resolution.get("note") or ""))
    _sins(result, tr)
    _noms(result, tr)
    _systems(result, tr)
    _performance(result, tr)
    _lmnop(result, tr)
    _tes(result, tr)
    _wbb(result, tr)


def locomo_panel(types_mask: int | None, tr: Translator) -> None:
    """Cancer Locomo types from ``patient_state.locomo_types`` (bits 1, 2, 4 → types 1, 2, 3)."""
    st.markdown(f"#### {tr.t('scores.locomo_title')}")
    mask = int(types_mask or 0)
    types = [t for t, bit in ((1, 1), (2, 2), (3, 4)) if mask & bit]
    if not types:
        st.markdown(tr.t("scores.locomo_none"))
        return
    for t in types:
        st.markdown(f"- {tr.t(f'scores.locomo_type{t}')}")
