"""Reads for the cancer-board page (role physician): the queue and one patient's case card.

* The queue walks ``risk_snapshot`` by priority (``ix_snapshot_active_priority``)
  and joins the one active ``board-candidate`` alert per patient (the partial
  unique index ``ux_alert_active_patient_rule``), so it costs the same at a
  thousand patients as at a million; it never returns more than
  :data:`QUEUE_LIMIT` rows.
* The case card touches only one patient's rows (primary key or
  ``patient_id``-indexed), re-checks the identity's scope in SQL, and scores
  the stored record with the pipeline's own engine
  (``surveillance.patient_case.case_from_record`` + ``score_case``), so the
  explanation the board reads is the computation behind the snapshot.
* Both are cached per scope and ``data_version()`` (never across scopes).

The display helpers at the end (:func:`surgery_screen`, :func:`score_rows`,
:func:`case_card_html`) turn a card into rows and a self-contained, escaped
HTML document for printing; they import no Streamlit API.
"""

from __future__ import annotations

import html
import json
import re
from datetime import date, datetime, timezone
from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import text

from dashboard.components.page import rule_title
from dashboard.data.common import CACHE_SECONDS, data_version, engine, scope_key, scope_sql
from dashboard.i18n import Translator
from db.models import ACTIVE_ALERT_SQL as ACTIVE_ALERT  # spelled as the partial alert indexes are
from surveillance.access import Action, Identity, require
from surveillance.patient_case import case_from_record
from surveillance.reports import totals_phrase
from surveillance.rules.engine import totals_of
from surveillance.scoring import CaseError, score_case

#: The queue never sends more rows than this to the page.
QUEUE_LIMIT = 500
#: Recent imaging shown on the card.
IMAGING_LIMIT = 5
#: Earlier board decisions shown on the card.
HISTORY_LIMIT = 5
BOARD_RULE = "board-candidate"
SEVERITY_SQL = "CASE a.severity WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'routine' THEN 2 ELSE 3 END"

#: Patient-level instruments of a ``score_case`` result, in display order.
SYSTEMS = ("tomita", "revised_tokuhashi", "bauer", "modified_bauer", "nesms", "new_katagiri")
SYSTEM_NAMES = {
    "tomita": "Tomita",
    "revised_tokuhashi": "Revised Tokuhashi",
    "bauer": "Bauer",
    "modified_bauer": "Modified Bauer",
    "nesms": "NESMS",
    "new_katagiri": "New Katagiri",
}


def as_date(value: Any) -> date | None:
    """A date column as a ``date`` (SQLite returns ISO text to untyped reads)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def as_moment(value: Any) -> datetime | None:
    """A timestamp column as a UTC-aware ``datetime``."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        value = datetime.fromisoformat(str(value))
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def totals_text(totals: list[int] | tuple[int, ...] | None, *, joiner: str = "or") -> str:
    """Possible totals as "8, 9 or 11" ("" when nothing can be computed)."""
    return totals_phrase(totals, joiner=joiner)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~:$])")


def md_escape(value: Any) -> str:
    """A stored value as literal text inside Streamlit markdown (names are data, not markup)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", "" if value is None else str(value))


def label_or(tr: Translator, key: str, fallback: Any) -> str:
    """The label ``key``, or ``fallback`` as text when the engine returns a value no label names yet."""
    try:
        return tr.t(key)
    except KeyError:
        return str(fallback).replace("_", " ")


def vocab_label(tr: Translator, group: str, code: Any, missing: str | None = None) -> str:
    """A stored code ("none_gt50_involved", "lung_nsclc") in words, as the patient page's forms name it."""
    if code is None or code == "":
        return tr.t("app.unknown") if missing is None else missing
    return label_or(tr, f"forms.{group}.{code}", code)


def _evidence(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


# ---------------------------------------------------------------------------
# The queue
# ---------------------------------------------------------------------------

QUEUE_COLUMNS = [
    "patient_id", "mrn", "name", "primary_site", "priority", "reasons", "since", "alert_status", "opened_at",
    "tier", "sins_worst", "bilsky_worst", "katagiri_band", "tes_screen",
]


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=256)
def _queue(_identity: Identity, key: tuple, version: int, limit: int) -> pd.DataFrame:
    sql, params = scope_sql(_identity)
    with engine().connect() as conn:
        rows = conn.execute(text(
            "SELECT s.patient_id, p.mrn, p.family_name, p.given_name, p.primary_site, s.priority, s.tier, "
            "s.sins_worst_mask, s.bilsky_worst, s.katagiri_band, s.tes_screen, a.status AS alert_status, "
            "a.evidence, a.opened_at FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id "
            "JOIN alert a ON a.patient_id = s.patient_id AND a.rule_id = :rule "
            f"AND a.status IN {ACTIVE_ALERT} "
            f"WHERE s.active = :active AND p.status = 'active' AND {sql} "
            "ORDER BY s.priority DESC, s.patient_id DESC LIMIT :limit"),
            dict(params, rule=BOARD_RULE, active=True, limit=limit)).all()
    records = []
    for r in rows:
        evidence = _evidence(r.evidence)
        records.append({
            "patient_id": int(r.patient_id),
            "mrn": r.mrn,
            "name": f"{r.family_name} {r.given_name}",
            "primary_site": r.primary_site,
            "priority": int(r.priority or 0),
            "reasons": str(evidence.get("reasons") or ""),
            "since": as_date(evidence.get("since")),
            "alert_status": r.alert_status,
            "opened_at": as_moment(r.opened_at),
            "tier": r.tier,
            "sins_worst": totals_text(totals_of(int(r.sins_worst_mask or 0))),
            "bilsky_worst": r.bilsky_worst,
            "katagiri_band": r.katagiri_band,
            "tes_screen": r.tes_screen,
        })
    return pd.DataFrame(records, columns=QUEUE_COLUMNS)


def board_queue(identity: Identity, *, limit: int = QUEUE_LIMIT) -> pd.DataFrame:
    """Active patients in scope with an active board-candidate alert, highest priority first (≤ 500 rows)."""
    require(identity, Action.VIEW_BOARD)
    return _queue(identity, scope_key(identity), data_version(), max(1, min(int(limit), QUEUE_LIMIT)))


# ---------------------------------------------------------------------------
# The case card
# ---------------------------------------------------------------------------

_PATIENT_COLUMNS = (
    "p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.department, p.primary_site, "
    "p.primary_histology, p.hormone_dependent, p.molecular_targeted_therapy, p.previous_chemotherapy, "
    "p.fit_for_surgery, p.status, p.registered_on, p.zoledronic_regimen, p.bma_not_indicated_reason, "
    "p.denosumab_transition_plan"
)
_LESION_COLUMNS = (
    "id, level, level_span_end, first_seen_on, pain, lesion_type, alignment, collapse, posterolateral, "
    "bilsky_escc, wbb_zones, wbb_layers, wbb_numbering, assessed_on"
)


def _dated(mapping, *keys: str) -> dict[str, Any]:
    out = dict(mapping)
    for key in keys:
        if key in out:
            out[key] = as_date(out[key])
    return out


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=128)
def _card(_identity: Identity, key: tuple, version: int, patient_id: int) -> dict[str, Any] | None:
    sql, params = scope_sql(_identity)
    pid = {"pid": patient_id}
    with engine().connect() as conn:
        patient = conn.execute(text(f"SELECT {_PATIENT_COLUMNS} FROM patient p WHERE p.id = :pid AND {sql}"),
                               dict(params, pid=patient_id)).first()
        if patient is None:
            return None
        state = conn.execute(text("SELECT * FROM patient_state WHERE patient_id = :pid"), pid).first()
        snapshot = conn.execute(text(
            "SELECT tier, priority, next_imaging_due, last_imaging_on, next_bma_due, tes_screen, locomo_types, "
            "computed_at FROM risk_snapshot WHERE patient_id = :pid"), pid).first()
        lesions = conn.execute(text(
            f"SELECT {_LESION_COLUMNS} FROM spinal_lesion WHERE patient_id = :pid AND active = :active ORDER BY id"),
            dict(pid, active=True)).all()
        imaging = conn.execute(text(
            "SELECT performed_on, modality, region, findings FROM imaging_study WHERE patient_id = :pid "
            "ORDER BY performed_on DESC, id DESC LIMIT :n"), dict(pid, n=IMAGING_LIMIT)).all()
        locomo = conn.execute(text(
            "SELECT condition, onset_on, resolved_on, management_plan, orthopaedic_review_on FROM locomo_condition "
            "WHERE patient_id = :pid ORDER BY onset_on, id"), pid).all()
        alerts = conn.execute(text(
            "SELECT a.id, a.rule_id, a.rule_version, a.severity, a.status, a.title, a.evidence, a.source, "
            f"a.opened_at FROM alert a WHERE a.patient_id = :pid AND a.status IN {ACTIVE_ALERT} "
            f"ORDER BY {SEVERITY_SQL}, a.opened_at, a.id"), pid).all()
        history = conn.execute(text(
            "SELECT decided_on, decision, decided_by, reason FROM board_case WHERE patient_id = :pid "
            "AND decided_on IS NOT NULL ORDER BY decided_on DESC, id DESC LIMIT :n"), dict(pid, n=HISTORY_LIMIT)).all()
    card: dict[str, Any] = {
        "patient": _dated(patient._mapping, "birth_date", "registered_on"),
        "state": dict(state._mapping) if state is not None else {},
        "snapshot": (
            _dated(snapshot._mapping, "next_imaging_due", "last_imaging_on", "next_bma_due")
            if snapshot is not None else {}
        ),
        "lesions": [_dated(r._mapping, "first_seen_on", "assessed_on") for r in lesions],
        "imaging": [_dated(r._mapping, "performed_on") for r in imaging],
        "locomo": [_dated(r._mapping, "onset_on", "resolved_on", "orthopaedic_review_on") for r in locomo],
        "alerts": [],
        "history": [_dated(r._mapping, "decided_on") for r in history],
        "reasons": "",
        "since": None,
        "result": None,
        "score_error": None,
    }
    for key in ("bma_first_on", "bma_last_on", "dental_last_on", "ecog_on", "labs_on"):
        card["state"][key] = as_date(card["state"].get(key))
    if card["snapshot"]:
        card["snapshot"]["computed_at"] = as_moment(card["snapshot"]["computed_at"])
    for r in alerts:
        alert = dict(r._mapping)
        alert["evidence"] = _evidence(alert["evidence"])
        alert["opened_at"] = as_moment(alert["opened_at"])
        card["alerts"].append(alert)
        if alert["rule_id"] == BOARD_RULE:
            card["reasons"] = str(alert["evidence"].get("reasons") or "")
            card["since"] = as_date(alert["evidence"].get("since"))
    try:
        card["result"] = score_case(case_from_record(card["patient"], card["state"], card["lesions"]))
    except CaseError as err:  # a stored value the engine cannot read: say why instead of guessing
        card["score_error"] = str(err)
    return card


def case_card(identity: Identity, patient_id: int) -> dict[str, Any] | None:
    """One patient's case card, or ``None`` when the patient is not in the identity's scope."""
    require(identity, Action.VIEW_BOARD)
    return _card(identity, scope_key(identity), data_version(), int(patient_id))


# ---------------------------------------------------------------------------
# Pure helpers: screens and rows for display and print
# ---------------------------------------------------------------------------

def surgery_screen(card: dict[str, Any], *, joiner: str = "or") -> list[dict[str, Any]]:
    """The scoring core's surgery-contraindication screen, with its values formatted for display (``joiner``: "or")."""
    screen = ((card.get("result") or {}).get("surgery_contraindication_screen") or {}).get("items") or []

    def shown(value: Any) -> Any:
        if value is None:
            return "—"
        if isinstance(value, list):
            return totals_text(value, joiner=joiner) or "—"
        if isinstance(value, float):
            return f"{value:,.0f}"
        return value

    renamed = {"platelets_per_ul": "platelets"}
    return [
        {"item": i["item"], "status": i["status"],
         "values": {renamed.get(k, k): shown(v) for k, v in i["values"].items()}}
        for i in screen
    ]


def score_rows(result: dict[str, Any] | None, tr: Translator) -> list[dict[str, str]]:
    """One row per instrument (and per lesion for SINS): possible totals, band and explanation."""
    if not result:
        return []
    joiner = tr.t("board.or")
    rows: list[dict[str, str]] = []
    for lesion in result.get("sins") or []:
        level = "–".join([lesion["level_span"][0], lesion["level_span"][-1]]) if lesion.get("level_span") else lesion["level"]
        rows.append({
            "system": f"SINS {level}",
            "totals": totals_text(lesion.get("possible_totals"), joiner=joiner) or tr.t("app.unknown"),
            "band": lesion.get("category") or "—",
            "explanation": lesion.get("explanation") or "",
        })
    for system in SYSTEMS:
        body = result.get(system) or {}
        rows.append({
            "system": SYSTEM_NAMES[system],
            "totals": totals_text(body.get("possible_totals"), joiner=joiner) or tr.t("app.unknown"),
            "band": body.get("band") or "—",
            "explanation": body.get("explanation") or "",
        })
    return rows


def noms_rows(result: dict[str, Any] | None) -> list[dict[str, str]]:
    rows = []
    for lesion in (result or {}).get("noms") or []:
        rows.append({
            "level": lesion["level"],
            "recommendation": lesion.get("recommendation") or "—",
            "candidates": ", ".join(lesion.get("candidates") or []) or "—",
            "flags": "; ".join((lesion.get("flag_meanings") or {}).values()) or "—",
        })
    return rows


def lesion_rows(card: dict[str, Any], tr: Translator) -> list[dict[str, str]]:
    """The active lesions with their components and SINS (from the card's own scoring)."""
    sins = list(((card.get("result") or {}).get("sins")) or [])
    rows = []
    for i, lesion in enumerate(card.get("lesions") or []):
        score = sins[i] if i < len(sins) else {}
        level = lesion["level"] + (f"–{lesion['level_span_end']}" if lesion.get("level_span_end") else "")
        rows.append({
            "level": level,
            "pain": vocab_label(tr, "pain", lesion.get("pain")),
            "lesion_type": vocab_label(tr, "lesion_type", lesion.get("lesion_type")),
            "alignment": vocab_label(tr, "alignment", lesion.get("alignment")),
            "collapse": vocab_label(tr, "collapse", lesion.get("collapse")),
            "posterolateral": vocab_label(tr, "posterolateral", lesion.get("posterolateral")),
            "bilsky": lesion.get("bilsky_escc") or tr.t("app.unknown"),
            "sins": totals_text(score.get("possible_totals"), joiner=tr.t("board.or")) or "—",
            "category": label_or(tr, f"scores.sins_{score['category']}", score["category"]) if score.get("category")
            else "—",
            "first_seen": tr.date(lesion.get("first_seen_on")),
            "assessed": tr.date(lesion.get("assessed_on")),
        })
    return rows


def imaging_rows(card: dict[str, Any], tr: Translator) -> list[dict[str, str]]:
    return [
        {"date": tr.date(r.get("performed_on")), "modality": vocab_label(tr, "modality", r.get("modality"), "—"),
         "region": vocab_label(tr, "region", r.get("region"), "—"), "findings": r.get("findings") or ""}
        for r in card.get("imaging") or []
    ]


def bma_summary(card: dict[str, Any], tr: Translator) -> dict[str, str]:
    state, snapshot, patient = card.get("state") or {}, card.get("snapshot") or {}, card.get("patient") or {}
    agent = state.get("bma_agent")
    if agent == "zoledronic_acid":
        regimen = patient.get("zoledronic_regimen") or tr.t("board.not_recorded")
    elif agent == "denosumab":
        regimen = "q4w" if state.get("bma_sre_prevention") in (None, True, 1) else tr.t("board.osteoporosis_dose")
    else:
        regimen = "—"
    dose = state.get("bma_last_dose_mg")
    return {
        "agent": vocab_label(tr, "agent", agent) if agent else tr.t("board.bma_none"),
        "last_dose": tr.date(state.get("bma_last_on")) + ("" if dose is None else f" ({float(dose):g} mg)"),
        "next_due": tr.date(snapshot.get("next_bma_due")),
        "regimen": regimen,
        "first_dose": tr.date(state.get("bma_first_on")),
        "dental_last": tr.date(state.get("dental_last_on")),
        "not_indicated": patient.get("bma_not_indicated_reason") or "—",
        "transition_plan": patient.get("denosumab_transition_plan") or "—",
    }


def demographics(card: dict[str, Any], tr: Translator, today: date) -> list[tuple[str, str]]:
    """(label, value) rows of the card's demographics and primary (shared by the page and the HTML card)."""
    patient, snapshot = card["patient"], card.get("snapshot") or {}
    age = age_on(patient.get("birth_date"), today)
    flags = tr.t(
        "board.flags_values",
        hormone=tr.t(f"board.tri_{tri(patient.get('hormone_dependent'))}"),
        targeted=tr.t(f"board.tri_{tri(patient.get('molecular_targeted_therapy'))}"),
        chemo=tr.t(f"board.tri_{tri(patient.get('previous_chemotherapy'))}"),
        fit=tr.t(f"board.tri_{tri(patient.get('fit_for_surgery'))}"),
    )
    return [
        (tr.t("board.birth_date"), tr.date(patient.get("birth_date"))),
        (tr.t("board.age"), "—" if age is None else str(age)),
        (tr.t("board.sex"), vocab_label(tr, "sex", patient.get("sex"), "—")),
        (tr.t("board.department"), patient.get("department") or "—"),
        (tr.t("board.primary"), vocab_label(tr, "site", patient.get("primary_site"), "—")),
        (tr.t("board.histology"), patient.get("primary_histology") or "—"),
        (tr.t("board.flags"), flags),
        (tr.t("board.registered"), tr.date(patient.get("registered_on"))),
        (tr.t("board.tier"), tr.t(f"tier.{snapshot['tier']}") if snapshot.get("tier") else "—"),
        (tr.t("board.next_imaging"), tr.date(snapshot.get("next_imaging_due"))),
    ]


def alert_rows(card: dict[str, Any], tr: Translator) -> list[dict[str, str]]:
    return [
        {"title": rule_title(tr, a.get("rule_id"), a["title"]), "severity": tr.t(f"severity.{a['severity']}"),
         "status": tr.t(f"alerts.status_{a['status']}"), "opened": tr.datetime(a["opened_at"]),
         "rule": f"{a['rule_id']} v{a['rule_version']}", "evidence": evidence_text(a["evidence"])}
        for a in card.get("alerts") or []
    ]


def active_conditions(card: dict[str, Any], tr: Translator) -> list[dict[str, str]]:
    return [
        {"condition": vocab_label(tr, "locomo", r["condition"]), "onset": tr.date(r.get("onset_on")), "plan": r.get("management_plan") or "—",
         "review": tr.date(r.get("orthopaedic_review_on"))}
        for r in card.get("locomo") or [] if r.get("resolved_on") is None
    ]


def tri(value: Any) -> str:
    """A stored yes/no/unknown flag (SQLite gives 0/1) as ``yes``/``no``/``unknown``."""
    return "unknown" if value is None else "yes" if bool(value) else "no"


def evidence_text(evidence: dict[str, Any]) -> str:
    """An alert's evidence as "key: value; …" (the inputs that fired it)."""
    parts = []
    for key, value in (evidence or {}).items():
        if value is None or value == "":
            continue
        shown = ", ".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.replace('_', ' ')}: {shown}")
    return "; ".join(parts) or "—"


def locomo_types(card: dict[str, Any]) -> list[int]:
    bits = int((card.get("snapshot") or {}).get("locomo_types") or (card.get("state") or {}).get("locomo_types") or 0)
    return [t for t in (1, 2, 3) if bits >> (t - 1) & 1]


def age_on(birth: date | None, today: date) -> int | None:
    if birth is None:
        return None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


# ---------------------------------------------------------------------------
# The printable case card (a self-contained HTML document, every value escaped)
# ---------------------------------------------------------------------------

_PRINT_CSS = (
    "body{font-family:system-ui,-apple-system,'Segoe UI','Hiragino Sans','Noto Sans CJK JP','Noto Sans JP',"
    "'Yu Gothic',Meiryo,sans-serif;margin:1.5cm;color:#111;font-size:11pt}"
    "h1{font-size:16pt;margin:0 0 .2em}h2{font-size:12.5pt;margin:1.1em 0 .3em;border-bottom:1px solid #999}"
    "table{border-collapse:collapse;width:100%;margin:.3em 0;font-size:9.5pt}th,td{border:1px solid #bbb;"
    "padding:3px 5px;text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#eee}"
    ".muted{color:#555;font-size:9.5pt}"
    "@media print{body{margin:1cm}h2{break-after:avoid}tr{break-inside:avoid}}"
)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f"<p class='muted'>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _facts(pairs: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in pairs)
    return f"<table><tbody>{body}</tbody></table>"


def case_card_html(card: dict[str, Any], tr: Translator, *, printed_at: datetime, printed_by: str) -> str:
    """The case card as one HTML document: no script, no external resource, every value escaped."""
    t = tr.t
    patient, result = card["patient"], card.get("result") or {}
    name = f"{patient['family_name']} {patient['given_name']}"
    parts = [
        "<!DOCTYPE html>",
        f"<html lang='{_e(tr.lang)}'><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>{_e(t('board.card_title'))} · {_e(patient['mrn'])}</title><style>{_PRINT_CSS}</style></head><body>",
        f"<h1>{_e(t('board.card_title'))}: {_e(name)} · {_e(patient['mrn'])}</h1>",
        f"<p class='muted'>{_e(t('board.printed', when=tr.datetime(printed_at), who=printed_by))}</p>",
        f"<h2>{_e(t('board.demographics'))}</h2>",
        _facts(demographics(card, tr, printed_at.date())),
        f"<h2>{_e(t('board.why'))}</h2>",
        f"<p>{_e(card.get('reasons') or '—')} ({_e(t('board.since', when=tr.date(card.get('since'))))})</p>",
        f"<h2>{_e(t('board.scores'))}</h2>",
    ]
    if card.get("score_error"):
        parts.append(f"<p>{_e(t('board.score_error', error=card['score_error']))}</p>")
    parts.append(_table(
        [t("board.col_system"), t("board.col_totals"), t("board.col_band"), t("board.col_explanation")],
        [[r["system"], r["totals"], r["band"], r["explanation"]] for r in score_rows(result, tr)],
        t("app.no_rows"),
    ))
    parts.append(f"<h2>{_e(t('board.noms'))}</h2>")
    parts.append(_table(
        [t("board.col_level"), t("board.col_recommendation"), t("board.col_candidates"), t("board.col_flags")],
        [[r["level"], r["recommendation"], r["candidates"], r["flags"]] for r in noms_rows(result)],
        t("app.no_rows"),
    ))
    parts.append(f"<h2>{_e(t('board.lesions'))}</h2>")
    lesion_keys = ["level", "pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky", "sins",
                   "category", "first_seen", "assessed"]
    parts.append(_table([t(f"board.col_{k}") for k in lesion_keys],
                        [[r[k] for k in lesion_keys] for r in lesion_rows(card, tr)], t("board.no_lesions")))
    parts.append(f"<h2>{_e(t('board.imaging'))}</h2>")
    parts.append(_table([t("board.col_date"), t("board.col_modality"), t("board.col_region"), t("board.col_findings")],
                        [[r["date"], r["modality"], r["region"], r["findings"]] for r in imaging_rows(card, tr)],
                        t("board.no_imaging")))
    bma = bma_summary(card, tr)
    parts.append(f"<h2>{_e(t('board.bma'))}</h2>")
    parts.append(_facts([(t(f"board.bma_{k}"), v) for k, v in bma.items()]))
    parts.append(f"<h2>{_e(t('board.locomo'))}</h2>")
    types = locomo_types(card)
    parts.append(f"<p>{_e(', '.join(t(f'board.locomo_type{k}') for k in types) or t('board.locomo_none'))}</p>")
    conditions = active_conditions(card, tr)
    if conditions:
        parts.append(_table([t("board.col_condition"), t("board.col_onset"), t("board.col_plan"), t("board.col_review")],
                            [[r["condition"], r["onset"], r["plan"], r["review"]] for r in conditions], ""))
    tes = result.get("tes_screen") or {}
    parts.append(f"<h2>{_e(t('board.tes'))}</h2>")
    verdict = label_or(tr, f"board.tes_{tes['result']}", tes["result"]) if tes else "—"
    parts.append(f"<p>{_e(t('board.tes_result', result=verdict))}</p>")
    parts.append(_table([t("board.col_criterion"), t("board.col_status")],
                        [[label_or(tr, f"board.tes_c_{k}", k), label_or(tr, f"board.status_{v}", v)]
                         for k, v in (tes.get("criteria") or {}).items()],
                        t("app.no_rows")))
    parts.append(f"<h2>{_e(t('board.contra'))}</h2><p class='muted'>{_e(t('board.contra_note'))}</p>")
    parts.append(_table([t("board.col_item"), t("board.col_record"), t("board.col_concern")],
                        [[t(f"board.contra_{i['item']}"), t(f"board.contra_{i['item']}_values", **i["values"]),
                          t(f"board.concern_{i['status']}")] for i in surgery_screen(card, joiner=t("board.or"))],
                        t("app.no_rows")))
    parts.append(f"<h2>{_e(t('board.alerts'))}</h2>")
    alert_keys = ["title", "severity", "status", "opened", "rule", "evidence"]
    parts.append(_table([t(f"board.col_{'alert' if k == 'title' else k}") for k in alert_keys],
                        [[r[k] for k in alert_keys] for r in alert_rows(card, tr)], t("board.no_alerts")))
    if card.get("history"):
        parts.append(f"<h2>{_e(t('board.history'))}</h2>")
        parts.append(_table([t("board.col_date"), t("board.col_decision"), t("board.col_by")],
                            [[tr.date(h["decided_on"]), h["decision"], h["decided_by"]] for h in card["history"]], ""))
    parts.append(f"<p class='muted'>{_e(t('board.engine', version=result.get('engine_version', '—')))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
