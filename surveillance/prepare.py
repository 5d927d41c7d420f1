"""The read-only half of the recompute: one batch read, scored, judged and planned.

:func:`prepare_batch` reads a batch of patients through a
:class:`db.readers.ColumnReader` — in the process that writes, or in a worker
process of a full run (:mod:`surveillance.workers`) — and returns a
:class:`PreparedBatch`: the snapshot rows, history rows and alert changes that
:func:`surveillance.pipeline.apply_batch` then writes in one transaction.

**The alert plan is skipped where it cannot change anything.**  What a run does
to a patient's alerts is a function of three things: the rules that fire with
their evidence keys and severities, the patient's alert rows, and the clock for
snoozes that end and escalations that fall due.  Each snapshot keeps the
*fingerprint* of the firings it was planned with, a *digest* of the patient's
alert rows after that plan (over the alerts a plan reads — active, and closed
by a person — their count, the sum of their ids, the sum of their versions and
the sum of id × status: every change to an alert bumps its version, a new
alert has a new, larger id, and a status written without a version bump still
moves the last sum, so any change moves the digest) and the rules whose alerts the plan left *open*.  A patient whose
firings and alert rows are both unchanged, and who has no snooze ending or
escalation due, gets an empty plan: their open alerts are the stored ones and
their alert rows are not read.  Everyone else is planned as before, from the
alert rows read here.

Nothing here writes.  The writer checks, in its transaction, that the facts
(``patient_state.updated_at``) and the alert digest of every patient it is
about to write are still those read here; a patient changed in between is left
to a re-score (:func:`surveillance.pipeline.recompute` revisits them), so a plan
made outside the write transaction is always the plan the transaction would
have made.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import text

from db.models import (
    ACTIVE_ALERT_SQL,
    ACTIVE_ALERT_STATUSES,
    ESCALATION_PENDING_WHERE,
    PERSON_CLOSED_SQL,
    PERSON_CLOSED_STATUSES,
    RiskSnapshot,
    status_list,
)
from db.queries import SCORE_COLUMNS
from db.readers import ColumnReader
from surveillance.batch import LESION_COLUMNS, BatchScorer
from surveillance.reports import SYSTEMS
from surveillance.rules import Evaluation, Frame, evaluate
from surveillance.rules.engine import RULE_ORDER, alert_summary, mask_max, totals_of
from surveillance.rules.schema import RuleSet
from surveillance.scoring.sins import TABLE as SINS_TABLE

#: The alert rows a plan reads, and so the rows the digest sums.
PLANNED_SQL = status_list(ACTIVE_ALERT_STATUSES + PERSON_CLOSED_STATUSES)
NO_ALERTS = "0:0:0:0"
NaT = np.datetime64("NaT", "D")
RULE_BIT = {rule_id: i for i, rule_id in enumerate(RULE_ORDER)}
assert len(RULE_ORDER) < 63, "open_rules is a 64-bit mask"

_PATIENT_SELECT = """
SELECT p.id, p.status, p.registered_on, p.primary_site, p.primary_histology,
       p.hormone_dependent, p.molecular_targeted_therapy, p.previous_chemotherapy, p.fit_for_surgery,
       p.assigned_nurse_id, p.zoledronic_regimen,
       CASE WHEN p.bma_not_indicated_reason IS NULL THEN 0 ELSE 1 END,
       CASE WHEN p.denosumab_transition_plan IS NULL THEN 0 ELSE 1 END,
       s.ecog, s.previous_ecog, s.ecog_on, s.kps, s.frankel_grade, s.previous_frankel_grade,
       s.ambulatory_status, s.previous_ambulatory_status, s.neuro_on, s.new_deficit_on,
       s.cord_compression_pain_on, s.new_spinal_pain_on,
       s.albumin_g_dl, s.crp_mg_dl, s.ldh_u_l, s.platelets_per_ul, s.calcium_mg_dl, s.calcium_on,
       s.total_bilirubin_mg_dl, s.creatinine_mg_dl, s.creatinine_on, s.creatinine_baseline_mg_dl,
       s.visceral_status, s.visceral_treatable, s.visceral_removable, s.brain_metastases,
       s.extraspinal_bone_metastases, s.vertebral_body_metastases, s.extraspinal_pathological_fracture,
       s.last_new_lesion_on, s.last_imaging_on, s.bma_agent, s.bma_first_on, s.bma_last_on,
       s.denosumab_last_on, s.zoledronic_first_on, s.dental_before_first_bma, s.dental_last_on,
       s.last_spine_sbrt_on, s.separation_surgery_on, s.separation_margin_mm, s.on_cancer_therapy,
       s.last_sre_on, s.locomo_types, s.locomo_type2_without_plan, s.locomo_type3_last_review_on,
       s.board_decided_on, s.updated_at
FROM patient p LEFT JOIN patient_state s ON s.patient_id = p.id
WHERE {where} ORDER BY p.id
"""
_PATIENT_FIELDS = [
    ("patient_id", "int"),
    ("status", "str"),
    ("registered_on", "date"),
    ("primary_site", "str"),
    ("primary_histology", "str"),
    ("hormone_dependent", "tri"),
    ("molecular_targeted_therapy", "tri"),
    ("previous_chemotherapy", "tri"),
    ("fit_for_surgery", "tri"),
    ("assigned_nurse_id", "float"),
    ("zoledronic_regimen", "str"),
    ("bma_not_indicated", "bool"),
    ("denosumab_transition_plan", "bool"),
    ("ecog", "float"),
    ("previous_ecog", "float"),
    ("ecog_on", "date"),
    ("kps", "float"),
    ("frankel_grade", "str"),
    ("previous_frankel_grade", "str"),
    ("ambulatory_status", "str"),
    ("previous_ambulatory_status", "str"),
    ("neuro_on", "date"),
    ("new_deficit_on", "date"),
    ("cord_compression_pain_on", "date"),
    ("new_spinal_pain_on", "date"),
    ("albumin_g_dl", "float"),
    ("crp_mg_dl", "float"),
    ("ldh_u_l", "float"),
    ("platelets_per_ul", "float"),
    ("calcium_mg_dl", "float"),
    ("calcium_on", "date"),
    ("total_bilirubin_mg_dl", "float"),
    ("creatinine_mg_dl", "float"),
    ("creatinine_on", "date"),
    ("creatinine_baseline_mg_dl", "float"),
    ("visceral_status", "str"),
    ("visceral_treatable", "tri"),
    ("visceral_removable", "tri"),
    ("brain_metastases", "tri"),
    ("extraspinal_bone_metastases", "float"),
    ("vertebral_body_metastases", "float"),
    ("extraspinal_pathological_fracture", "tri"),
    ("last_new_lesion_on", "date"),
    ("last_imaging_on", "date"),
    ("bma_agent", "str"),
    ("bma_first_on", "date"),
    ("bma_last_on", "date"),
    ("denosumab_last_on", "date"),
    ("zoledronic_first_on", "date"),
    ("dental_before_first_bma", "tri"),
    ("dental_last_on", "date"),
    ("last_spine_sbrt_on", "date"),
    ("separation_surgery_on", "date"),
    ("separation_margin_mm", "float"),
    ("on_cancer_therapy", "bool"),
    ("last_sre_on", "date"),
    ("locomo_types", "float"),
    ("locomo_type2_without_plan", "bool"),
    ("locomo_type3_last_review_on", "date"),
    ("board_decided_on", "date"),
    # Last: the facts' stamp, read in the same statement as the facts (the writer re-checks it).
    ("state_updated_at", "str"),
]
#: The lesion columns the batch scorer reads, keyed by patient id as read (its row index is added after).
_LESION_NAMES = ["patient_id", *LESION_COLUMNS[1:]]
_LESION_SELECT = """
SELECT {columns}
FROM spinal_lesion WHERE active AND {where} ORDER BY patient_id, id
"""

SNAPSHOT_COLUMNS = [
    "patient_id",
    "run_id",
    "computed_at",
    "content_hash",
    "active",
    "assigned_nurse_id",
    "primary_site",
    "lesion_count",
    *SCORE_COLUMNS,  # in db.queries' order: the content hash depends on it
    "tes_screen",
    "locomo_types",
    "tier",
    "last_imaging_on",
    "next_imaging_due",
    "recheck_on",
    "open_alerts",
    "critical_alerts",
    "priority",
    "alert_reasons",
    "next_bma_due",
]
_HASHED = [c for c in SNAPSHOT_COLUMNS if c not in ("patient_id", "run_id", "computed_at", "content_hash")]
#: Snapshot columns held by an index of ``risk_snapshot`` (read from the model, so a new index counts).
#: SQLite rewrites the entries of every index whose column an UPDATE *sets*, even to the value it had:
#: setting all 40 columns cost 100 ms per 1,000 rows at 100,000 patients against 9 ms for the
#: unindexed ones.  A changed snapshot therefore sets an indexed column only when its value changed.
_INDEXED = tuple(
    c
    for c in SNAPSHOT_COLUMNS
    if c != "patient_id" and any(c in index.columns for index in RiskSnapshot.__table__.indexes)
)
_PLAIN = [c for c in SNAPSHOT_COLUMNS if c != "patient_id" and c not in _INDEXED]
HISTORY_COLUMNS = [
    "patient_id",
    "run_id",
    "computed_at",
    "content_hash",
    "sins_worst_mask",
    "tomita_mask",
    "tokuhashi_mask",
    "bauer_mask",
    "modified_bauer_mask",
    "nesms_mask",
    "katagiri_mask",
    "tier",
    "next_imaging_due",
    "priority",
]
ALERT_INSERT_COLUMNS = [
    "patient_id",
    "rule_id",
    "rule_version",
    "severity",
    "status",
    "title",
    "evidence",
    "evidence_key",
    "source",
    "opened_at",
    "opened_run_id",
    "action_due_at",
    "escalate_at",
    "version",
]
#: Prognostic systems -> their snapshot column prefix (the reports' table, without SINS).
_SYSTEM_COLUMNS = {system: column for system, column in SYSTEMS.items() if system != "sins_worst"}
#: Rules whose alert escalates when still open after a fixed time (hours), from their parameters.
_ESCALATING = {"mscc-suspected": "escalate_after_hours"}
#: Rules with a deadline to act (days), from their parameters.
_ACTION_DUE = {"spinal-pain-no-neuro": "action_within_days"}


def _date_values(values: np.ndarray) -> list[str | None]:
    text = values.astype(str).astype(object)
    text[np.isnat(values)] = None
    return text.tolist()


def _optional_int(values: np.ndarray, known: np.ndarray) -> list[int | None]:
    out = np.where(known, values, 0).astype(np.int64).astype(object)
    out[~known] = None
    return out.tolist()


def _hash_columns(columns: list[np.ndarray]) -> np.ndarray:
    """A stable 64-bit content hash per row (not Python's salted ``hash``)."""
    h = np.full(len(columns[0]), np.uint64(1469598103934665603), dtype=np.uint64)
    prime = np.uint64(1099511628211)
    for col in columns:
        if col.dtype == object:
            # zlib.crc32 of each distinct value: stable across processes.
            import zlib

            distinct = {v: zlib.crc32(repr(v).encode()) for v in set(col.tolist())}
            values = np.fromiter((distinct[v] for v in col.tolist()), dtype=np.uint64, count=len(col))
        elif col.dtype.kind == "M":
            values = col.astype("datetime64[D]").view(np.int64).astype(np.uint64)
        elif col.dtype.kind == "f":
            values = np.nan_to_num(col, nan=-1.0).view(np.uint64)
        else:
            values = col.astype(np.int64).view(np.uint64)
        with np.errstate(over="ignore"):
            h = (h ^ values) * prime
            h ^= h >> np.uint64(29)
    return h


@dataclass
class _Batch:
    ids: np.ndarray
    patients: dict[str, np.ndarray]
    lesions: dict[str, np.ndarray]


def _frame(
    batch: _Batch,
    scored,
) -> Frame:
    p = batch.patients
    n = len(batch.ids)
    columns = {
        "patient_id": batch.ids,
        "active": p["status"] == "active",
        "lesion_count": scored.lesion_count,
        "sins_worst_mask": scored.sins_worst_mask,
        "sins_worst_level": scored.sins_worst_level,
        "bilsky_worst_rank": scored.bilsky_worst_rank,
        "bilsky_worst_level": scored.bilsky_worst_level,
        "bilsky_unknown": scored.bilsky_unknown,
        "lesions_assessed_on": scored.lesions_assessed_on,
        "mechanical_pain_on": scored.mechanical_pain_on,
        "tokuhashi_mask": scored.masks["revised_tokuhashi"],
        "katagiri_mask": scored.masks["new_katagiri"],
        "tes_screen": scored.tes_screen,
        "locomo_types": np.nan_to_num(p["locomo_types"], nan=0).astype(np.int64),
    }
    for name in (
        "registered_on",
        "primary_site",
        "extraspinal_bone_metastases",
        "ecog",
        "previous_ecog",
        "ecog_on",
        "frankel_grade",
        "previous_frankel_grade",
        "ambulatory_status",
        "previous_ambulatory_status",
        "neuro_on",
        "new_deficit_on",
        "cord_compression_pain_on",
        "new_spinal_pain_on",
        "last_new_lesion_on",
        "last_imaging_on",
        "last_spine_sbrt_on",
        "bma_agent",
        "bma_first_on",
        "bma_last_on",
        "denosumab_last_on",
        "zoledronic_first_on",
        "zoledronic_regimen",
        "bma_not_indicated",
        "denosumab_transition_plan",
        "dental_before_first_bma",
        "dental_last_on",
        "creatinine_mg_dl",
        "creatinine_on",
        "creatinine_baseline_mg_dl",
        "calcium_mg_dl",
        "calcium_on",
        "albumin_g_dl",
        "separation_surgery_on",
        "separation_margin_mm",
        "locomo_type2_without_plan",
        "locomo_type3_last_review_on",
        "on_cancer_therapy",
        "last_sre_on",
        "board_decided_on",
    ):
        columns[name] = p[name]
    return Frame.from_columns(n, columns)


@dataclass
class _AlertPlan:
    inserts: list[tuple]
    updates: list[tuple]  # (severity, status, snoozed_until_cleared, escalated_at, id, version, patient_id)
    resolves: list[tuple]  # (closed_at, close_reason, id, version, (patient_id, rule_id))
    open_rows: dict[str, np.ndarray]  # rule id -> batch rows whose alert for that rule is open after the plan


def _json_values(values: np.ndarray) -> list[str]:
    """JSON text of each value, each distinct value encoded once."""
    cache: dict[tuple[type, Any], str] = {}
    out = []
    for v in values.tolist():
        try:
            text = cache[(type(v), v)]
        except KeyError:
            text = cache[(type(v), v)] = json.dumps(v, ensure_ascii=False)
        except TypeError:  # an unhashable value (a list): encoded as it comes
            text = json.dumps(v, ensure_ascii=False)
        out.append(text)
    return out


def _evidence_json(evaluation: Evaluation, rule_id: str, rows: np.ndarray) -> list[str]:
    """Evidence of many rows as JSON text, without building a dict per row."""
    out = evaluation.outputs[rule_id]
    names = list(out.evidence)
    rendered = []
    for name in names:
        values = out.evidence[name][rows]
        if values.dtype.kind == "M":
            text = np.where(np.isnat(values), "null", np.char.add(np.char.add('"', values.astype(str)), '"'))
        elif values.dtype.kind == "f":
            text = np.where(np.isnan(values), "null", np.char.mod("%g", np.nan_to_num(values)))
        elif values.dtype.kind in "iub":
            text = values.astype(np.int64).astype(str)
        else:
            text = np.array(_json_values(values))
        rendered.append(text.tolist())
    prefixes = [json.dumps(name) + ": " for name in names]
    return (
        [
            "{" + ", ".join(p + v for p, v in zip(prefixes, parts, strict=True) if v not in ("null", '""')) + "}"
            for parts in zip(*rendered, strict=True)
        ]
        if names
        else ["{}"] * len(rows)
    )


def _evidence_keys(evaluation: Evaluation, rule_id: str, rows: np.ndarray) -> np.ndarray:
    """The episode key of each fired row: the rule's key parts as text joined by "|" (at most 128 characters)."""
    parts = [np.asarray(part)[rows].astype(str) for part in evaluation.outputs[rule_id].key]
    keys = parts[0]
    for part in parts[1:]:
        keys = np.char.add(np.char.add(keys, "|"), part)
    keys = keys.astype(object)
    if len(keys) and max(map(len, keys)) > 128:
        keys = np.array([k[:128] for k in keys], dtype=object)
    return keys


def _timestamps(values: pd.Series) -> pd.Series:
    """Stored timestamps (text on SQLite, datetimes on PostgreSQL) as UTC; naive ones are UTC."""
    return pd.to_datetime(values, utc=True, format="ISO8601")


#: ``app_setting`` key: the rule order (``RULE_ORDER``) of the bits in ``risk_snapshot.open_rules``,
#: written when a full run completes.  A full run re-plans every patient whose firings' fingerprint
#: changed, and a rule that moved changes it, so after one every mask uses the order of its code.
OPEN_RULES_ORDER_KEY = "open_rules_order"
OPEN_RULES_ORDER = ",".join(RULE_ORDER)


def open_rule_mask(conn, rule_id: str | None) -> int | None:
    """The bit of ``rule_id`` in the stored ``open_rules`` masks, or None when they may use another order.

    None until a full run of this code has completed (a release that reorders ``RULE_ORDER``
    leaves older masks behind until then), and for a rule the engine does not know.
    """
    if not rule_id or rule_id not in RULE_BIT:
        return None
    stored = conn.execute(text("SELECT value FROM app_setting WHERE key = :k"), {"k": OPEN_RULES_ORDER_KEY}).scalar()
    return 1 << RULE_BIT[rule_id] if stored == OPEN_RULES_ORDER else None


def _pair_keys(patient_ids: np.ndarray, rule_ids: np.ndarray) -> np.ndarray:
    """One int64 per (patient, rule): ``patient * 64 + the rule's bit``; a rule no longer in the set gets 63.

    Rules outside ``RULE_ORDER`` never fire, so their alerts only need to differ from every firing.
    """
    bits = np.fromiter((RULE_BIT.get(r, 63) for r in rule_ids), dtype=np.int64, count=len(rule_ids))
    return np.asarray(patient_ids, dtype=np.int64) * 64 + bits


_ACTIVE_COLUMNS = [
    "id",
    "patient_id",
    "rule_id",
    "active_key",
    "active_status",
    "active_severity",
    "snoozed_until",
    "escalate_at",
    "escalated_at",
    "version",
]


def plan_alerts(
    fired: pd.DataFrame,
    active: pd.DataFrame,
    closed: pd.DataFrame,
    evaluation: Evaluation,
    ruleset: RuleSet,
    run_id: int,
    now: datetime,
    dialect: str,
) -> _AlertPlan:
    """What the batch's firings do to the stored alerts, decided for all rows at once.

    A firing whose episode (rule + evidence key) is already active keeps that
    alert (its severity updated, an expired snooze reopened, an overdue
    escalation stamped); a firing with a new key supersedes the active alert; a
    firing of an episode a person closed (done/dismissed) is not reopened; an
    active alert that no longer fires is resolved.
    """
    ids = evaluation.frame.patient_id
    fired = fired.copy()
    fired["patient_id"] = fired["patient_id"].astype(np.int64)
    active["patient_id"] = active["patient_id"].astype(np.int64)
    fired_pairs = _pair_keys(fired["patient_id"].to_numpy(), fired["rule_id"].to_numpy())
    active_pairs = _pair_keys(active["patient_id"].to_numpy(), active["rule_id"].to_numpy())
    # At most one active alert per (patient, rule) — a partial unique index — so the merge keeps the rows.
    # One int64 key instead of (patient, rule text): a third of the plan's time went to the two-column merges.
    m = fired.assign(pair=fired_pairs).merge(
        active.drop(columns=["patient_id", "rule_id"]).assign(pair=active_pairs), on="pair", how="left", sort=False
    )
    has_active = m["id"].notna().to_numpy()
    same = has_active & (m["active_key"] == m["key"]).to_numpy()
    now_ts = pd.Timestamp(now)
    snoozed_until = _timestamps(m["snoozed_until"])
    escalate_at = _timestamps(m["escalate_at"])
    status = m["active_status"].to_numpy()
    snooze_over = same & (status == "snoozed") & (snoozed_until <= now_ts).to_numpy()
    escalate = same & (status == "open") & m["escalated_at"].isna().to_numpy() & (escalate_at <= now_ts).to_numpy()
    changed = same & ((m["severity"] != m["active_severity"]).to_numpy() | snooze_over | escalate)
    updates = [
        (severity, "open" if over else state, bool(over), now if esc else None, int(alert_id), int(version), int(pid))
        for severity, state, over, esc, alert_id, version, pid in zip(
            m["severity"].to_numpy()[changed],
            status[changed],
            snooze_over[changed],
            escalate[changed],
            m["id"].to_numpy()[changed],
            m["version"].to_numpy()[changed],
            m["patient_id"].to_numpy()[changed],
            strict=True,
        )
    ]
    resolves: list[tuple] = [
        (now, "superseded by a new episode", int(alert_id), int(version), (int(pid), rule))
        for alert_id, version, pid, rule in m.loc[
            has_active & ~same, ["id", "version", "patient_id", "rule_id"]
        ].itertuples(index=False, name=None)
    ]
    # A person closed this very episode: it is not reopened (and stays out of the open counts).
    if len(closed):
        closed_episode = (
            m[["patient_id", "rule_id", "key"]]
            .merge(closed.assign(closed=True), on=["patient_id", "rule_id", "key"], how="left")["closed"]
            .eq(True)
            .to_numpy()
        )
    else:
        closed_episode = np.zeros(len(m), dtype=bool)
    new = ~same & ~closed_episode
    is_open = (same & ((status == "open") | snooze_over)) | new
    open_rows = {
        rule_id: group["row"].to_numpy(dtype=np.int64)
        for rule_id, group in m.loc[is_open, ["rule_id", "row"]].groupby("rule_id", sort=False)
    }
    inserts: list[tuple] = []
    created = m.loc[new, ["rule_id", "row", "key"]]
    for rule_id, group in created.groupby("rule_id", sort=False):
        rule = ruleset.rule(rule_id)
        rows = group["row"].to_numpy(dtype=np.int64)
        evidence = _evidence_json(evaluation, rule_id, rows)
        escalate_hours = rule.params.get(_ESCALATING.get(rule_id, ""), None)
        due_days = rule.params.get(_ACTION_DUE.get(rule_id, ""), None)
        escalate_due = now + timedelta(hours=escalate_hours) if escalate_hours else None
        action_due = _db_time(dialect, now + timedelta(days=due_days) if due_days else escalate_due)
        escalate_due = _db_time(dialect, escalate_due)
        stamp = _db_time(dialect, now)
        source = rule.source + (" (verify)" if rule.verify else "")
        severities = evaluation.severity[rule_id][rows].astype(str)
        for pid, severity, key, ev in zip(
            ids[rows].tolist(), severities.tolist(), group["key"].tolist(), evidence, strict=True
        ):
            inserts.append(
                (
                    pid,
                    rule_id,
                    rule.version,
                    severity,
                    "open",
                    rule.title,
                    ev,
                    key,
                    source,
                    stamp,
                    run_id,
                    action_due,
                    escalate_due,
                    1,
                )
            )
    if len(active):
        cleared = active.loc[~np.isin(active_pairs, fired_pairs), ["id", "version", "patient_id", "rule_id"]]
        for alert_id, version, pid, rule in cleared.itertuples(index=False, name=None):
            resolves.append((now, "condition cleared", int(alert_id), int(version), (int(pid), rule)))
    return _AlertPlan(inserts, updates, resolves, open_rows)


def _snapshot_rows(
    batch: _Batch, scored, evaluation: Evaluation, open_rows: dict[str, np.ndarray], ruleset: RuleSet
) -> dict[str, Any]:
    """Snapshot columns for the batch (numpy), priority from the alerts left open."""
    n = len(batch.ids)
    open_alerts = alert_summary(open_rows, evaluation.severity, ruleset, n)
    reason_text = np.array([text[:512] or None for text in open_alerts.reasons.tolist()], dtype=object)
    masks = scored.masks
    sins_mask = scored.sins_worst_mask
    sins_max = mask_max(sins_mask)
    single = (sins_mask != 0) & ((sins_mask & (sins_mask - 1)) == 0)
    distinct_masks, mask_index = np.unique(sins_mask, return_inverse=True)
    categories = np.array(
        [SINS_TABLE.band_of(totals_of(m)) if m else None for m in distinct_masks.tolist()], dtype=object
    )[mask_index.reshape(-1)]
    grades = np.array([None, "0", "1a", "1b", "1c", "2", "3"], dtype=object)  # rank -1 (unknown) .. 5
    bilsky = grades[np.clip(scored.bilsky_worst_rank, -1, 5) + 1]
    p = batch.patients
    interval = np.where(
        p["bma_agent"] == "zoledronic_acid", np.where(p["zoledronic_regimen"] == "q12w", 84, 28), 28
    ).astype("timedelta64[D]")
    next_bma = np.where(np.isnat(p["bma_last_on"]), NaT, p["bma_last_on"] + interval)
    columns: dict[str, Any] = {
        "active": p["status"] == "active",
        "assigned_nurse_id": p["assigned_nurse_id"],
        "primary_site": p["primary_site"],
        "lesion_count": scored.lesion_count,
        "sins_worst_mask": sins_mask,
        "sins_worst_total": np.where(single, sins_max, -1),
        "sins_worst_category": categories,
        "bilsky_worst": bilsky,
        "tes_screen": scored.tes_screen,
        "locomo_types": np.nan_to_num(p["locomo_types"], nan=0).astype(np.int64),
        "tier": evaluation.tier,
        "last_imaging_on": p["last_imaging_on"],
        "next_imaging_due": evaluation.next_imaging_due,
        "recheck_on": evaluation.recheck_on,
        "open_alerts": open_alerts.count,
        "critical_alerts": open_alerts.critical,
        "priority": open_alerts.priority,
        "alert_reasons": reason_text,
        "next_bma_due": next_bma,
    }
    for system, column in _SYSTEM_COLUMNS.items():
        mask = masks[system]
        one = (mask != 0) & ((mask & (mask - 1)) == 0)
        columns[f"{column}_mask"] = mask
        columns[f"{column}_total"] = np.where(one, mask_max(mask), -1)
        columns[f"{column}_band"] = scored.bands[system]
    return columns


def _to_db_rows(columns: dict[str, Any], names: list[str], n: int, fixed: dict[str, Any]) -> list[tuple]:
    lists = []
    for name in names:
        if name in fixed:
            lists.append([fixed[name]] * n)
            continue
        values = columns[name]
        if isinstance(values, list):
            lists.append(values)
        elif values.dtype.kind == "M":
            lists.append(_date_values(values))
        elif name.endswith("_total") or name == "assigned_nurse_id":
            as_float = values.astype(float)
            known = ~np.isnan(as_float) & (as_float >= 0)
            lists.append(_optional_int(as_float, known))
        elif values.dtype == bool:
            lists.append([bool(v) for v in values.tolist()])
        else:
            lists.append(values.tolist())
    return list(zip(*lists, strict=True))


# ---------------------------------------------------------------------------
# Which patients, and how they are selected
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """The patients of one batch: an id range (full runs) or a list (incremental runs)."""

    lo: int | None = None
    hi: int | None = None
    ids: tuple[int, ...] | None = None

    def where(self, column: str) -> str:
        if self.ids is not None:
            return f"{column} IN {_in_list(self.ids)}"
        return f"{column} BETWEEN {int(self.lo)} AND {int(self.hi)}"


def _in_list(ids: Sequence[int]) -> str:
    return "(" + ",".join(str(int(i)) for i in ids) + ")" if len(ids) else "(NULL)"


def select_ids(ids: Sequence[int], all_of: Selection) -> Selection:
    """``ids`` (a subset of ``all_of``) — as ``all_of`` itself when they are most of it (one range scan)."""
    if all_of.ids is None and len(ids) > 2_000:
        return all_of
    return Selection(ids=tuple(int(i) for i in ids))


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


def _db_time(dialect: str, value: datetime | None) -> datetime | str | None:
    """A timestamp as the driver stores it, converted once for many rows (sqlite3 adapts each row otherwise)."""
    return value.isoformat(" ") if value is not None and dialect == "sqlite" else value


def read_batch(reader: ColumnReader, sel: Selection) -> _Batch:
    kinds = [kind for _name, kind in _PATIENT_FIELDS]
    columns = reader.columns(_PATIENT_SELECT.format(where=sel.where("p.id")), kinds)
    patients = {name: col for (name, _kind), col in zip(_PATIENT_FIELDS, columns, strict=True)}
    ids = patients["patient_id"]
    lesion_kinds = [{"patient_id": "int", "assessed_on": "date"}.get(name, "str") for name in _LESION_NAMES]
    lcols = reader.columns(
        _LESION_SELECT.format(columns=", ".join(_LESION_NAMES), where=sel.where("patient_id")), lesion_kinds
    )
    lesions = dict(zip(_LESION_NAMES, lcols, strict=True))
    lesions["patient_index"] = np.searchsorted(ids, lesions["patient_id"]) if len(ids) else lesions["patient_id"]
    return _Batch(ids, patients, lesions)


def state_stamps(reader: ColumnReader, sel: Selection) -> dict[int, Any]:
    """``patient_state.updated_at`` of the selected patients: every fact write changes it."""
    return {
        int(p): s
        for p, s in reader.rows(f"SELECT patient_id, updated_at FROM patient_state WHERE {sel.where('patient_id')}")
    }


def alert_digests(reader: ColumnReader, sel: Selection) -> dict[int, str]:
    """The digest of each selected patient's planned-on alert rows (absent: no such alerts, :data:`NO_ALERTS`)."""
    pid, count, ids, versions, states = reader.columns(
        "SELECT patient_id, COUNT(*), SUM(id), SUM(version), SUM(id * CASE status WHEN 'open' THEN 1 "
        "WHEN 'acknowledged' THEN 2 WHEN 'snoozed' THEN 3 WHEN 'done' THEN 4 ELSE 5 END) "
        f"FROM alert WHERE status IN {PLANNED_SQL} AND {sel.where('patient_id')} GROUP BY patient_id",
        ["int"] * 5,
    )
    return {
        p: f"{c}:{i}:{v}:{s}"
        for p, c, i, v, s in zip(
            pid.tolist(), count.tolist(), ids.tolist(), versions.tolist(), states.tolist(), strict=True
        )
    }


def wake_up_sql(dialect: str, at: str, where: str = "1 = 1") -> str:
    """The patients whose snooze has ended or whose escalation is due at ``at`` (an SQL value or ``?``).

    Both queries read a small partial index; SQLite is told to (without statistics it preferred a
    status-led index and scanned every open alert: 2.8 s instead of a millisecond at 1M).
    """
    snooze, escalation = (
        (" INDEXED BY ix_alert_snooze_ends", " INDEXED BY ix_alert_escalation_due") if dialect == "sqlite" else ("", "")
    )
    return (
        f"SELECT patient_id FROM alert{snooze} WHERE status = 'snoozed' AND snoozed_until <= {at} AND {where} "
        f"UNION SELECT patient_id FROM alert{escalation} WHERE {ESCALATION_PENDING_WHERE} "
        f"AND escalate_at <= {at} AND {where}"
    )


def clock_due(reader: ColumnReader, sel: Selection, now: datetime) -> set[int]:
    """Patients with a snooze that has ended or an escalation that is due at ``now`` (the plan acts on these)."""
    at = "'" + now.isoformat(" ") + "'"
    return {int(r[0]) for r in reader.rows(wake_up_sql(reader.dialect, at, sel.where("patient_id")))}


def _stored(reader: ColumnReader, sel: Selection, ids: np.ndarray) -> dict[str, np.ndarray]:
    """The stored snapshots' content hash, alert fingerprint, digest and open rules, aligned to ``ids``.

    ``exists`` marks the patients with a snapshot; the others have None / masked values.
    """
    pid, content, prints, digest, open_rules = reader.columns(
        "SELECT patient_id, content_hash, alert_fingerprint, alert_digest, open_rules FROM risk_snapshot "
        f"WHERE {sel.where('patient_id')}",
        ["int", "str", "int?", "str", "int?"],
    )
    n = len(ids)
    at = np.searchsorted(ids, pid)
    keep = (at < n) & (ids[np.minimum(at, n - 1)] == pid) if n else np.zeros(len(pid), bool)
    at, pid = at[keep], pid[keep]
    out = {
        "exists": np.zeros(n, dtype=bool),
        "content_hash": np.full(n, None, dtype=object),
        "fingerprint": np.zeros(n, dtype=np.int64),
        "fingerprint_known": np.zeros(n, dtype=bool),
        "digest": np.full(n, None, dtype=object),
        "open_rules": np.zeros(n, dtype=np.int64),
    }
    out["exists"][at] = True
    out["content_hash"][at] = content[keep]
    out["fingerprint"][at] = np.ma.getdata(prints)[keep]
    out["fingerprint_known"][at] = ~np.ma.getmaskarray(prints)[keep]
    out["digest"][at] = digest[keep]
    out["open_rules"][at] = np.ma.getdata(open_rules)[keep] * ~np.ma.getmaskarray(open_rules)[keep]
    return out


def _alert_frames(reader: ColumnReader, sel: Selection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The selected patients' active alerts, and their person-closed episodes (patient, rule, key).

    Two queries by status: one by patient would also read every resolved alert, which
    accumulate for as long as the store lives.  On SQLite each names its partial index:
    with the sampled statistics of ``optimize`` the planner chose to scan every active
    alert by status instead (0.4 s instead of 20 ms for 1,000 patients at 1M).
    """
    where = sel.where("patient_id")
    active_ix, closed_ix = (
        (" INDEXED BY ux_alert_active_patient_rule", " INDEXED BY ix_alert_person_closed")
        if reader.dialect == "sqlite"
        else ("", "")
    )
    active = pd.DataFrame(
        reader.rows(
            "SELECT id, patient_id, rule_id, evidence_key, status, severity, snoozed_until, escalate_at, "
            f"escalated_at, version FROM alert{active_ix} WHERE status IN {ACTIVE_ALERT_SQL} AND {where}"
        ),
        columns=_ACTIVE_COLUMNS,
    )
    closed = pd.DataFrame(
        reader.rows(
            f"SELECT DISTINCT patient_id, rule_id, evidence_key FROM alert{closed_ix} WHERE status IN {PERSON_CLOSED_SQL} "
            f"AND {where}"
        ),
        columns=["patient_id", "rule_id", "key"],
    )
    return active, closed


# ---------------------------------------------------------------------------
# Firings and their fingerprint
# ---------------------------------------------------------------------------


def fired_table(evaluation: Evaluation, only: np.ndarray | None = None) -> pd.DataFrame:
    """The firings of the batch (of the rows in the boolean mask ``only``): row, patient, rule, evidence key, severity.

    Built from one set of arrays (not a frame per rule and a concat: 5 ms of 1,000 patients' plan).
    """
    ids = evaluation.frame.patient_id
    rows_of: list[np.ndarray] = []
    rules: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    severities: list[np.ndarray] = []
    for rule_id in RULE_ORDER:
        rows = evaluation.fired_rows(rule_id)
        if only is not None:
            rows = rows[only[rows]]
        if len(rows):
            rows_of.append(rows)
            rules.append(np.full(len(rows), rule_id, dtype=object))
            keys.append(_evidence_keys(evaluation, rule_id, rows))
            severities.append(np.asarray(evaluation.severity[rule_id][rows]).astype(object))
    rows = np.concatenate(rows_of).astype(np.int64) if rows_of else np.zeros(0, dtype=np.int64)
    empty = np.zeros(0, dtype=object)  # object like the stored alerts', so merges accept it
    return pd.DataFrame(
        {
            "row": rows,
            "patient_id": np.asarray(ids)[rows].astype(np.int64),
            "rule_id": np.concatenate(rules) if rules else empty,
            "key": np.concatenate(keys) if keys else empty,
            "severity": np.concatenate(severities) if severities else empty,
        }
    )


_PRIME = np.uint64(1099511628211)


def _value_hashes(values: np.ndarray) -> np.ndarray:
    """A 64-bit hash per value: equal values hash equal (numbers by value, whatever their dtype)."""
    values = np.asarray(values)
    if values.dtype.kind == "M":
        days = values.astype("datetime64[D]")
        values = np.where(np.isnat(days), np.nan, days.view(np.int64).astype(np.float64))
    if values.dtype.kind in "iubf":
        as_float = values.astype(np.float64)
        as_float = np.where(np.isnan(as_float), np.nan, as_float + 0.0)  # one NaN, and -0.0 as 0.0
        return as_float.view(np.uint64)
    return pd.util.hash_array(values.astype(object).astype(str).astype(object))


def fingerprints(evaluation: Evaluation, ruleset: RuleSet) -> np.ndarray:
    """A 64-bit fingerprint per row of the rules that fire, their evidence keys and severities.

    Built from the key *parts* (the values the evidence key is written from), not
    the key text, so a run does not format keys for patients it will not plan:
    equal parts make equal keys, so equal firings give equal fingerprints, and a
    difference in any part, rule or severity changes it (64-bit hashes; a
    spurious difference only costs a re-plan).  Stable across processes (SipHash
    with pandas' fixed key; CRC-32 of the rules' version).
    """
    n = len(evaluation.frame.patient_id)
    h = np.full(n, np.uint64(zlib.crc32(f"rules {ruleset.version}".encode())), dtype=np.uint64)
    with np.errstate(over="ignore", invalid="ignore"):
        for bit, rule_id in enumerate(RULE_ORDER):
            rows = evaluation.fired_rows(rule_id)
            if not len(rows):
                continue
            part = np.full(len(rows), np.uint64(0x9E3779B97F4A7C15) * np.uint64(bit + 1), dtype=np.uint64)
            for values in [*evaluation.outputs[rule_id].key, evaluation.severity[rule_id]]:
                part = (part ^ _value_hashes(np.asarray(values)[rows])) * _PRIME
                part ^= part >> np.uint64(29)
            h[rows] = (h[rows] ^ part) * _PRIME
            h[rows] ^= h[rows] >> np.uint64(31)
    return h.view(np.int64)


def open_rule_masks(open_rows: dict[str, np.ndarray], n: int) -> np.ndarray:
    mask = np.zeros(n, dtype=np.int64)
    for rule_id, rows in open_rows.items():
        mask[rows] |= np.int64(1) << np.int64(RULE_BIT[rule_id])
    return mask


def _rows_of_masks(masks: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for rule_id, bit in RULE_BIT.items():
        picked = rows[(masks[rows] >> np.int64(bit)) & 1 == 1]
        if len(picked):
            out[rule_id] = picked
    return out


# ---------------------------------------------------------------------------
# One batch
# ---------------------------------------------------------------------------


@dataclass
class PreparedBatch:
    """What one batch writes, and what the writer must find unchanged before writing it."""

    selection: Selection
    patients: int
    #: Rows in SNAPSHOT_COLUMNS + META_COLUMNS order; ``alert_digest`` is None where the plan changed
    #: alerts (the writer reads it after writing them).
    snapshots: list[tuple]
    inserts: list[tuple]
    updates: list[tuple]
    resolves: list[tuple]
    #: Every patient written to (snapshot or alert): their facts' stamp and alert digest as read.
    stamps: dict[int, Any]
    digests: dict[int, str]
    planned: int = 0
    revisit: bool = False
    timings: dict[str, float] = field(default_factory=dict)


META_COLUMNS = ["alert_fingerprint", "alert_digest", "open_rules"]


class PhaseClock:
    """Seconds per phase of a batch (``PreparedBatch.timings``; the bench and the logs show them)."""

    def __init__(self) -> None:
        import time

        self._now = time.perf_counter
        self._last = self._now()
        self.laps: dict[str, float] = {}

    def __call__(self, phase: str) -> None:
        at = self._now()
        self.laps[phase] = self.laps.get(phase, 0.0) + at - self._last
        self._last = at


def prepare_batch(
    reader: ColumnReader,
    scorer: BatchScorer,
    ruleset: RuleSet,
    sel: Selection,
    *,
    run_id: int,
    now: datetime,
    today,
    revisit: bool = False,
    in_transaction: bool = False,
) -> PreparedBatch | None:
    """Read, score, judge and plan one batch, in one read transaction of ``reader``; nothing is written.

    ``in_transaction``: the reads are part of the write transaction that will write the
    batch.  Then every patient is planned and the alert digests are not read; the
    snapshots are written without fingerprint or digest, so the next full run plans
    these patients again.
    """
    clock = PhaseClock()
    try:
        # The digests first: an alert changed after them is caught by the writer's check.  The facts'
        # stamps come with the facts, in one statement.
        digests = {} if in_transaction else alert_digests(reader, sel)
        clock("digests")
        batch = read_batch(reader, sel)
        clock("read")
        if len(batch.ids) == 0:
            return None
        stored = _stored(reader, sel, batch.ids)
        # A snooze ending or an escalation falling due forces a plan; planning everyone, no need.
        due = set() if in_transaction else clock_due(reader, sel, now)
        clock("stored+due")
        scored = scorer.score(batch.patients, batch.lesions)
        clock("score")
        evaluation = evaluate(_frame(batch, scored), ruleset, today)
        clock("evaluate")
        n = len(batch.ids)
        ids = batch.ids
        pid_list = ids.tolist()
        now_digest = np.array([digests.get(p, NO_ALERTS) for p in pid_list], dtype=object)
        if in_transaction:
            # Everyone is planned, and the snapshots are written without fingerprint or digest
            # (the next full run plans these patients), so the fingerprints are not needed.
            prints = np.full(n, None, dtype=object)
            plan_rows = np.ones(n, dtype=bool)
        else:
            prints = fingerprints(evaluation, ruleset)
            clock("fingerprints")
            same_digest = stored["exists"] & (stored["digest"] == now_digest)
            known_print = stored["fingerprint_known"]
            stored_print = stored["fingerprint"]
            due_rows = np.isin(ids, np.fromiter(due, dtype=np.int64, count=len(due))) if due else np.zeros(n, bool)
            plan_rows = ~(known_print & (stored_print == prints) & same_digest) | due_rows
        stored_open = stored["open_rules"]
        planned = np.flatnonzero(plan_rows)
        open_rows = _rows_of_masks(stored_open, np.flatnonzero(~plan_rows))
        inserts: list[tuple] = []
        updates: list[tuple] = []
        resolves: list[tuple] = []
        if len(planned):
            planned_sel = select_ids(ids[planned].tolist(), sel)
            active, closed = _alert_frames(reader, planned_sel)
            active = active[active["patient_id"].astype(np.int64).isin(ids[planned])] if len(active) else active
            closed = closed[closed["patient_id"].astype(np.int64).isin(ids[planned])] if len(closed) else closed
            plan = plan_alerts(
                fired_table(evaluation, plan_rows),
                active,
                closed,
                evaluation,
                ruleset,
                run_id,
                now,
                reader.dialect,
            )
            inserts, updates, resolves = plan.inserts, plan.updates, plan.resolves
            clock("plan")
            for rule_id, rows in plan.open_rows.items():
                open_rows[rule_id] = np.sort(np.concatenate([open_rows.get(rule_id, np.array([], np.int64)), rows]))
    finally:
        reader.end()
    columns = _snapshot_rows(batch, scored, evaluation, open_rows, ruleset)
    content = _hash_columns(
        [
            np.asarray(columns[c]) if not isinstance(columns[c], list) else np.asarray(columns[c], dtype=object)
            for c in _HASHED
        ]
    )
    hashes = np.char.mod("%016x", content).astype(object)
    clock("snapshot+hash")
    masks = open_rule_masks(open_rows, n)
    changed_alerts = {row[0] for row in inserts} | {row[4][0] for row in resolves} | {int(u[6]) for u in updates}
    write = (stored["content_hash"] != hashes) | plan_rows
    write_rows = np.flatnonzero(write)
    columns["patient_id"] = ids
    columns["content_hash"] = hashes
    columns["alert_fingerprint"] = prints
    columns["open_rules"] = masks
    columns["alert_digest"] = np.array(
        [None if in_transaction or p in changed_alerts else d for p, d in zip(pid_list, now_digest, strict=True)],
        dtype=object,
    )
    subset = {
        k: (np.asarray(v, dtype=object)[write_rows] if isinstance(v, list) else v[write_rows])
        for k, v in columns.items()
    }
    fixed = {"run_id": run_id, "computed_at": _db_time(reader.dialect, now)}
    snapshots = _to_db_rows(subset, SNAPSHOT_COLUMNS + META_COLUMNS, len(write_rows), fixed)
    touched = {row[0] for row in snapshots} | changed_alerts
    stamps = dict(zip(pid_list, batch.patients["state_updated_at"].tolist(), strict=True))
    clock("rows")
    return PreparedBatch(
        selection=sel,
        patients=n,
        snapshots=snapshots,
        inserts=inserts,
        updates=updates,
        resolves=resolves,
        stamps={p: stamps[p] for p in touched},
        digests={p: digests.get(p, NO_ALERTS) for p in touched},
        planned=len(planned),
        revisit=revisit,
        timings=clock.laps,
    )
