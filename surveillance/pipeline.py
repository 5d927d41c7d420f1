"""The recompute: facts → scores, the imaging clock, alerts and a snapshot per patient.

Set-based, as ``shared/design.md`` requires: patients are processed in batches;
each batch is read with a handful of queries (the patient row, its
``patient_state`` and its active lesions), scored by
:class:`surveillance.batch.BatchScorer` with the scoring core's own functions,
judged by the pure rule engine, and written back in **one transaction per
batch** with bulk statements.  A crash leaves every batch either fully written
or untouched, so the previous snapshot stays current for every patient whose
batch did not commit; the run is recorded in ``job_run`` as failed.  ``job_run``
counts the committed batches in each batch's own transaction, and a run whose
process was killed outright (so it could record nothing) is marked failed as
abandoned by the next run (:func:`surveillance.jobs.mark_abandoned_runs`).

* **Full** runs visit every patient; **incremental** runs visit the patients
  whose facts changed (``recompute_queue``), whose clock crossed a date
  (``risk_snapshot.recheck_on``), whose snooze expired or whose alert is due to
  escalate.  Both produce the same snapshot for the same data.
* Snapshots are rewritten only when their content changed (a 64-bit content
  hash), and each change is appended to ``risk_snapshot_history``.
* Alerts: at most one active (open, acknowledged or snoozed) per patient and
  rule.  A rule that stops firing resolves its alert; a new episode (a new
  evidence key) supersedes the old one; an acknowledged or snoozed alert is
  never reopened by a rerun, and an episode a person closed (done, dismissed)
  is not reopened either.  Updates carry the alert's version, so a person's
  concurrent acknowledgement always wins.

The clock is a parameter (``now``); :mod:`surveillance.jobs` reads it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from db import bulk
from db.engine import derived_write, is_sqlite, writer
from db.models import RiskSnapshot, utcnow
from surveillance.batch import BatchScorer, shared_scorer
from surveillance.calendar import clinical_day
from surveillance.rules import Evaluation, Frame, evaluate, load_rules
from surveillance.rules.engine import RULE_ORDER, alert_summary, mask_max, totals_of
from surveillance.rules.schema import RuleSet
from surveillance.scoring import ENGINE_VERSION
from surveillance.scoring.sins import TABLE as SINS_TABLE
from surveillance.trend_tables import refresh_trend_tables

log = logging.getLogger(__name__)

FULL_BATCH = 50_000
INCREMENTAL_BATCH = 5_000
_PG_BATCH_LOCK = 727_002  # advisory lock key that serialises batch writes on PostgreSQL (audit uses 727_001)
#: Re-scoring passes, within one run, for patients saved while their batch was scored (they stay queued after).
REVISIT_PASSES = 3
ACTIVE_STATUSES = ("open", "acknowledged", "snoozed")
HUMAN_CLOSED = ("done", "dismissed")
ACTIVE_SQL = "('open', 'acknowledged', 'snoozed')"

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
       s.board_decided_on
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
]
_LESION_SELECT = """
SELECT patient_id, level, level_span_end, pain, lesion_type, alignment, collapse, posterolateral, bilsky_escc, assessed_on
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
    "sins_worst_mask",
    "sins_worst_total",
    "sins_worst_category",
    "bilsky_worst",
    "tomita_mask",
    "tomita_total",
    "tomita_band",
    "tokuhashi_mask",
    "tokuhashi_total",
    "tokuhashi_band",
    "bauer_mask",
    "bauer_total",
    "bauer_band",
    "modified_bauer_mask",
    "modified_bauer_total",
    "modified_bauer_band",
    "nesms_mask",
    "nesms_total",
    "nesms_band",
    "katagiri_mask",
    "katagiri_total",
    "katagiri_band",
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
_SYSTEM_COLUMNS = {
    "tomita": "tomita",
    "revised_tokuhashi": "tokuhashi",
    "bauer": "bauer",
    "modified_bauer": "modified_bauer",
    "nesms": "nesms",
    "new_katagiri": "katagiri",
}
#: Rules whose alert escalates when still open after a fixed time (hours), from their parameters.
_ESCALATING = {"mscc-suspected": "escalate_after_hours"}
#: Rules with a deadline to act (days), from their parameters.
_ACTION_DUE = {"spinal-pain-no-neuro": "action_within_days"}


@dataclass
class RunResult:
    run_id: int
    kind: str
    status: str
    patients: int = 0
    snapshots_written: int = 0
    alerts_opened: int = 0
    alerts_resolved: int = 0
    alerts_updated: int = 0
    batches: int = 0
    seconds: float = 0.0
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


# ---------------------------------------------------------------------------
# Column conversion
# ---------------------------------------------------------------------------

NaT = np.datetime64("NaT", "D")


def _column(kind: str, values: Sequence[Any]) -> np.ndarray:
    if kind == "date":
        # Few distinct dates among many rows: parse each distinct value once.
        codes, distinct = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=True)
        parsed = np.append(np.array(list(distinct), dtype="datetime64[D]"), NaT)
        return parsed[codes]  # the sentinel -1 picks the trailing NaT
    if kind == "float":
        return np.array(values, dtype=float)
    if kind == "int":
        return np.array(values, dtype=np.int64)
    if kind == "bool":
        return np.array([bool(v) for v in values], dtype=bool)
    if kind == "tri":
        as_float = np.array(values, dtype=float)
        return np.where(np.isnan(as_float), -1, as_float).astype(np.int8)
    return np.array(values, dtype=object)


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


# ---------------------------------------------------------------------------
# One batch
# ---------------------------------------------------------------------------


@dataclass
class _Batch:
    ids: np.ndarray
    patients: dict[str, np.ndarray]
    lesions: dict[str, np.ndarray]


def _read_batch(conn, where_patient: str, where_lesion: str) -> _Batch:
    names, columns = bulk.fetch_columns(conn, _PATIENT_SELECT.format(where=where_patient))
    patients = {name: _column(kind, col) for (name, kind), col in zip(_PATIENT_FIELDS, columns, strict=True)}
    ids = patients["patient_id"]
    _, lcols = bulk.fetch_columns(conn, _LESION_SELECT.format(where=where_lesion))
    lesion_names = [
        "patient_id",
        "level",
        "level_span_end",
        "pain",
        "lesion_type",
        "alignment",
        "collapse",
        "posterolateral",
        "bilsky_escc",
        "assessed_on",
    ]
    lesions = {
        name: _column("date" if name == "assessed_on" else "int" if name == "patient_id" else "str", col)
        for name, col in zip(lesion_names, lcols, strict=True)
    }
    lesions["patient_index"] = np.searchsorted(ids, lesions["patient_id"]) if len(ids) else lesions["patient_id"]
    return _Batch(ids, patients, lesions)


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
    updates: list[tuple]  # (severity, status, snoozed_until_cleared, escalated_at, id, version)
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


def _update_alerts(
    conn,
    row_columns: tuple[str, ...],
    fixed: str,
    rows: list[tuple],
    params: list[Any],
    *,
    extra_where: str = "",
    status_after: Callable[[tuple], str],
    chunk: int = 500,
) -> set[int]:
    """Update many alerts, each only at the version read (optimistic locking); the ids changed.

    ``rows`` are ``(id, version, *values)`` with ``values`` for ``row_columns``;
    ``fixed`` is the rest of the SET clause, its ``?`` bound to ``params``.  An
    alert a person acted on meanwhile is left alone and reported by its absence.

    PostgreSQL: ``UPDATE … FROM (VALUES …) RETURNING`` (few round trips; ``VALUES``
    columns are ``column1``, ``column2``…).  SQLite: ``executemany`` — measured
    4× faster there than the join — and when fewer rows changed than were sent,
    the changed ones are those now at version + 1 with the status set.
    """
    if not rows:
        return set()
    if conn.dialect.name == "sqlite":
        sets = ", ".join([f"{c} = ?" for c in row_columns] + [fixed])
        text = f"UPDATE alert SET {sets} WHERE alert.id = ? AND alert.version = ?{extra_where}"
        count = bulk.executemany_count(conn, text, [(*row[2:], *params, row[0], row[1]) for row in rows])
        if count == len(rows):
            return {row[0] for row in rows}
        now_at = {
            alert_id: (version, status)
            for alert_id, version, status in bulk.fetchall(
                conn, "SELECT id, version, status FROM alert WHERE id IN " + bulk.in_list([row[0] for row in rows])
            )
        }
        return {row[0] for row in rows if now_at.get(row[0]) == (row[1] + 1, status_after(row))}
    changed: set[int] = set()
    sets = ", ".join([f"{c} = v.column{3 + i}" for i, c in enumerate(row_columns)] + [fixed])
    for start in range(0, len(rows), chunk):
        part = rows[start : start + chunk]
        width = len(part[0])
        values = ", ".join("(" + ", ".join("?" for _ in range(width)) + ")" for _ in part)
        text = (
            f"UPDATE alert SET {sets} FROM (VALUES {values}) AS v "
            f"WHERE alert.id = v.column1 AND alert.version = v.column2{extra_where} RETURNING alert.id"
        )
        # The SET clause's own parameters come first in the statement, then the VALUES rows.
        changed.update(r[0] for r in bulk.fetchall(conn, text, [*params, *(value for row in part for value in row)]))
    return changed


def _db_time(conn, value: datetime | None) -> datetime | str | None:
    """A timestamp as the driver stores it, converted once for many rows (sqlite3 adapts each row otherwise)."""
    return value.isoformat(" ") if value is not None and conn.dialect.name == "sqlite" else value


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


def _plan_alerts(
    conn, evaluation: Evaluation, ruleset: RuleSet, where_alert: str, run_id: int, now: datetime
) -> _AlertPlan:
    """What the batch's firings do to the stored alerts, decided for all rows at once.

    A firing whose episode (rule + evidence key) is already active keeps that
    alert (its severity updated, an expired snooze reopened, an overdue
    escalation stamped); a firing with a new key supersedes the active alert; a
    firing of an episode a person closed (done/dismissed) is not reopened; an
    active alert that no longer fires is resolved.
    """
    ids = evaluation.frame.patient_id
    active = pd.DataFrame(
        bulk.fetchall(
            conn,
            "SELECT id, patient_id, rule_id, evidence_key, status, severity, snoozed_until, escalate_at, "
            f"escalated_at, version FROM alert WHERE status IN {ACTIVE_SQL} AND {where_alert}",
        ),
        columns=_ACTIVE_COLUMNS,
    )
    closed = pd.DataFrame(
        bulk.fetchall(
            conn,
            f"SELECT DISTINCT patient_id, rule_id, evidence_key FROM alert WHERE status IN ('done', 'dismissed') "
            f"AND {where_alert}",
        ),
        columns=["patient_id", "rule_id", "key"],
    )
    pieces = []
    for rule_id in RULE_ORDER:
        rows = evaluation.fired_rows(rule_id)
        if len(rows):
            pieces.append(
                pd.DataFrame(
                    {
                        "row": rows,
                        "patient_id": ids[rows],
                        "rule_id": rule_id,
                        "key": _evidence_keys(evaluation, rule_id, rows),
                        "severity": evaluation.severity[rule_id][rows],
                    }
                )
            )
    fired = (
        pd.concat(pieces, ignore_index=True)
        if pieces
        else pd.DataFrame(
            {
                "row": [],
                "patient_id": [],
                "rule_id": pd.Series([], dtype=object),  # object like ``active``'s, so the merge accepts it
                "key": pd.Series([], dtype=object),
                "severity": pd.Series([], dtype=object),
            }
        )
    )
    fired["patient_id"] = fired["patient_id"].astype(np.int64)
    active["patient_id"] = active["patient_id"].astype(np.int64)
    # At most one active alert per (patient, rule) — a partial unique index — so the merge keeps the rows.
    m = fired.merge(active, on=["patient_id", "rule_id"], how="left", sort=False)
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
        (severity, "open" if over else state, bool(over), now if esc else None, int(alert_id), int(version))
        for severity, state, over, esc, alert_id, version in zip(
            m["severity"].to_numpy()[changed],
            status[changed],
            snooze_over[changed],
            escalate[changed],
            m["id"].to_numpy()[changed],
            m["version"].to_numpy()[changed],
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
        action_due = _db_time(conn, now + timedelta(days=due_days) if due_days else escalate_due)
        escalate_due = _db_time(conn, escalate_due)
        stamp = _db_time(conn, now)
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
        cleared = active.merge(fired[["patient_id", "rule_id"]].drop_duplicates(), how="left", indicator=True)
        for alert_id, version, pid, rule in cleared.loc[
            cleared["_merge"] == "left_only", ["id", "version", "patient_id", "rule_id"]
        ].itertuples(index=False, name=None):
            resolves.append((now, "condition cleared", int(alert_id), int(version), (int(pid), rule)))
    return _AlertPlan(inserts, updates, resolves, open_rows)


def _snapshot_rows(batch: _Batch, scored, evaluation: Evaluation, plan: _AlertPlan, ruleset: RuleSet) -> dict[str, Any]:
    """Snapshot columns for the batch (numpy), priority from the alerts left open."""
    n = len(batch.ids)
    open_alerts = alert_summary(plan.open_rows, evaluation.severity, ruleset, n)
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


def _canonical(value: Any) -> str | None:
    """A stored or new column value in one comparable form (SQLite and PostgreSQL return different types)."""
    if value is None:
        return None
    if isinstance(value, bool | int | np.integer):
        return str(int(value))
    if isinstance(value, date):  # a datetime is a date too
        return value.isoformat()[:10]
    return str(value)


def _write_snapshots(conn, rows: list[tuple], stored: dict[int, tuple]) -> None:
    """Write changed snapshots (``rows`` in :data:`SNAPSHOT_COLUMNS` order); ``stored``: id -> (hash, *indexed).

    A patient without a snapshot is inserted (an upsert, so a concurrent first
    write cannot fail).  One with a snapshot is updated, setting the unindexed
    columns and only those indexed columns whose value changed; the rows are
    grouped by which indexed columns changed, a statement per group.
    """
    position = {c: k for k, c in enumerate(SNAPSHOT_COLUMNS)}
    plain = [position[c] for c in _PLAIN]
    indexed = [position[c] for c in _INDEXED]
    fresh: list[tuple] = []
    groups: dict[tuple[bool, ...], list[tuple]] = {}
    for row in rows:
        before = stored.get(row[0])
        if before is None:
            fresh.append(row)
            continue
        moved = tuple(_canonical(row[k]) != _canonical(old) for k, old in zip(indexed, before[1:], strict=True))
        groups.setdefault(moved, []).append(row)
    if fresh:
        bulk.executemany(conn, bulk.upsert_sql("risk_snapshot", SNAPSHOT_COLUMNS, ["patient_id"]), fresh)
    for moved, group in groups.items():
        sets = [k for k in plain] + [k for k, flag in zip(indexed, moved, strict=True) if flag]
        text = (
            "UPDATE risk_snapshot SET "
            + ", ".join(f"{SNAPSHOT_COLUMNS[k]} = ?" for k in sets)
            + " WHERE patient_id = ?"
        )
        count = bulk.executemany_count(conn, text, [tuple(row[k] for k in sets) + (row[0],) for row in group])
        if count != len(group):  # a snapshot vanished meanwhile: write the whole rows (idempotent)
            bulk.executemany(conn, bulk.upsert_sql("risk_snapshot", SNAPSHOT_COLUMNS, ["patient_id"]), group)


def _prepare(
    engine: Engine, scorer: BatchScorer, ruleset: RuleSet, today: date, where_patient: str, where_lesion: str
) -> tuple[_Batch, Any, Evaluation] | None:
    """Read, score and evaluate one batch (no writes): what :func:`_process` then writes.

    The batch's ``patient_state`` stamps are read first, so a fact saved after that
    is seen by :func:`_process` as a changed stamp (see :func:`_state_stamps`).
    """
    with engine.connect() as conn:
        stamps = _state_stamps(conn, where_lesion)
        batch = _read_batch(conn, where_patient, where_lesion)
        conn.rollback()
    if len(batch.ids) == 0:
        return None
    scored = scorer.score(batch.patients, batch.lesions)
    return batch, scored, evaluate(_frame(batch, scored), ruleset, today), stamps


def _state_stamps(conn, where: str) -> dict[int, Any]:
    """``patient_state.updated_at`` of the batch's patients: every fact write changes it."""
    return dict(bulk.fetchall(conn, f"SELECT patient_id, updated_at FROM patient_state WHERE {where}"))


def _process(
    engine: Engine,
    scorer: BatchScorer,
    ruleset: RuleSet,
    run_id: int,
    now: datetime,
    today: date,
    where_patient: str,
    where_lesion: str,
    where_other: str,
    queue_upto: int | None,
    prepared: tuple[_Batch, Any, Evaluation, dict[int, Any]] | None | Literal[False] = False,
    revisit: bool = False,
) -> dict[str, Any]:
    """Write one batch in one transaction: alerts, snapshots, history; ``prepared`` if already read.

    A patient whose facts were saved between the batch's read and this write (its
    ``patient_state`` stamp moved) may have been given scores older than its facts,
    over the fresh ones its own re-score wrote: it is queued again and returned in
    ``"stale"`` for the run to re-score before it ends.  ``revisit`` marks such a
    second pass (its patients are not counted again).
    """
    if prepared is False:
        prepared = _prepare(engine, scorer, ruleset, today, where_patient, where_lesion)
    if prepared is None:
        return {"patients": 0}
    batch, scored, evaluation, stamps = prepared
    n = len(batch.ids)
    with derived_write(engine) as conn:
        if not is_sqlite(engine):
            # One batch write at a time, as SQLite's BEGIN IMMEDIATE gives: two re-scores of one
            # patient would otherwise both plan and insert "its" new alert (a unique violation),
            # or write scores from facts older than the other's.  Reading and scoring stay parallel.
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_BATCH_LOCK})")
        plan = _plan_alerts(conn, evaluation, ruleset, where_other, run_id, now)
        columns = _snapshot_rows(batch, scored, evaluation, plan, ruleset)
        content = _hash_columns(
            [
                np.asarray(columns[c]) if not isinstance(columns[c], list) else np.asarray(columns[c], dtype=object)
                for c in _HASHED
            ]
        )
        hashes = np.char.mod("%016x", content).astype(object)
        stored = {
            row[0]: row[1:]
            for row in bulk.fetchall(
                conn, f"SELECT patient_id, content_hash, {', '.join(_INDEXED)} FROM risk_snapshot WHERE {where_other}"
            )
        }
        changed = np.array(
            [(stored.get(int(pid)) or (None,))[0] != h for pid, h in zip(batch.ids.tolist(), hashes, strict=True)],
            dtype=bool,
        )
        columns["patient_id"] = batch.ids
        columns["content_hash"] = hashes
        written = int(changed.sum())
        if written:
            sel = np.flatnonzero(changed)
            subset = {
                k: (np.asarray(v, dtype=object)[sel] if isinstance(v, list) else v[sel]) for k, v in columns.items()
            }
            fixed = {"run_id": run_id, "computed_at": _db_time(conn, now)}
            _write_snapshots(conn, _to_db_rows(subset, SNAPSHOT_COLUMNS, written, fixed), stored)
            bulk.executemany(
                conn,
                bulk.insert_sql("risk_snapshot_history", HISTORY_COLUMNS),
                _to_db_rows(subset, HISTORY_COLUMNS, written, fixed),
            )
        stale_alert_ids: set[int] = set()
        # Updates, grouped by the shape of their SET clause; an alert whose version moved is stale.
        shapes: dict[tuple[bool, bool], list[tuple]] = {}
        for severity, status, clear_snooze, escalated_at, alert_id, version in plan.updates:
            shapes.setdefault((bool(clear_snooze), escalated_at is not None), []).append(
                (alert_id, version, severity, status)
            )
        for (clear_snooze, escalate), rows in shapes.items():
            fixed = (
                "version = alert.version + 1"
                + (", snoozed_until = NULL, snooze_reason = NULL" if clear_snooze else "")
                + (", escalated_at = ?" if escalate else "")
            )
            done = _update_alerts(
                conn, ("severity", "status"), fixed, rows, [now] if escalate else [], status_after=lambda r: r[3]
            )
            stale_alert_ids.update(row[0] for row in rows if row[0] not in done)
        resolved = 0
        blocked: set[tuple[int, str]] = set()
        by_reason: dict[str, list[tuple]] = {}
        for _closed_at, reason, alert_id, version, pair in plan.resolves:
            by_reason.setdefault(reason, []).append((alert_id, version, pair))
        for reason, rows in by_reason.items():
            done = _update_alerts(
                conn,
                (),
                "status = 'resolved', closed_at = ?, closed_by = 'system', close_reason = ?, "
                "version = alert.version + 1",
                [(alert_id, version) for alert_id, version, _pair in rows],
                [now, reason],
                extra_where=f" AND alert.status IN {ACTIVE_SQL}",
                status_after=lambda r: "resolved",
            )
            resolved += len(done)
            for alert_id, _version, pair in rows:
                if alert_id not in done:
                    stale_alert_ids.add(alert_id)
                    blocked.add(pair)  # still active (a person just acted on it): no second active alert
        # Inserts after the resolutions: a new episode may replace the alert resolved just above.
        inserts = [row for row in plan.inserts if (row[0], row[1]) not in blocked]
        bulk.executemany(conn, bulk.insert_sql("alert", ALERT_INSERT_COLUMNS), inserts)
        if stale_alert_ids:
            # A person changed one of these alerts meanwhile: their change stands; rescore next run.
            bulk.execute(
                conn,
                "INSERT INTO recompute_queue (patient_id, queued_at) SELECT patient_id, ? FROM alert WHERE id IN "
                + bulk.in_list(sorted(stale_alert_ids)),
                (now,),
            )
        if queue_upto is not None:
            bulk.execute(conn, f"DELETE FROM recompute_queue WHERE id <= ? AND {where_other}", (queue_upto,))
        now_stamps = _state_stamps(conn, where_other)
        stale = sorted(pid for pid in set(stamps) | set(now_stamps) if stamps.get(pid) != now_stamps.get(pid))
        if stale:
            bulk.executemany(
                conn, "INSERT INTO recompute_queue (patient_id, queued_at) VALUES (?, ?)", [(p, now) for p in stale]
            )
        # The run's progress, in the batch's own transaction: ``job_run`` always counts exactly the
        # committed batches, so a run killed mid-way shows how far it got (and nothing more).
        bulk.execute(
            conn,
            "UPDATE job_run SET patients = patients + ?, batches = batches + 1, "
            "snapshots_written = snapshots_written + ?, alerts_opened = alerts_opened + ?, "
            "alerts_resolved = alerts_resolved + ? WHERE id = ?",
            (0 if revisit else n, written, len(inserts), resolved, run_id),
        )
    return {
        "stale": stale,
        "revisit": revisit,
        "patients": n,
        "snapshots_written": written,
        "alerts_opened": len(inserts),
        "alerts_resolved": resolved,
        "alerts_updated": len(plan.updates),
    }


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def _start_run(
    engine: Engine, kind: str, trigger: str, now: datetime, today: date, ruleset: RuleSet, owner: str | None
) -> int:
    with derived_write(engine) as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(
                bulk.sql(
                    conn,
                    "INSERT INTO job_run (kind, trigger, started_at, status, patients, snapshots_written, "
                    "alerts_opened, alerts_resolved, batches, owner, engine_version, rules_version, as_of) "
                    "VALUES (?, ?, ?, 'running', 0, 0, 0, 0, 0, ?, ?, ?, ?)"
                    + ("" if is_sqlite(engine) else " RETURNING id"),
                ),
                (kind, trigger, now, owner, ENGINE_VERSION, ruleset.version, today.isoformat()),
            )
            run_id = cursor.lastrowid if is_sqlite(engine) else cursor.fetchone()[0]
        finally:
            cursor.close()
    return int(run_id)


def _finish_run(engine: Engine, result: RunResult, finished: datetime) -> None:
    with derived_write(engine) as conn:
        bulk.execute(
            conn,
            "UPDATE job_run SET finished_at = ?, status = ?, patients = ?, snapshots_written = ?, alerts_opened = ?, "
            "alerts_resolved = ?, batches = ?, message = ? WHERE id = ?",
            (
                finished,
                result.status,
                result.patients,
                result.snapshots_written,
                result.alerts_opened,
                result.alerts_resolved,
                result.batches,
                result.message,
                result.run_id,
            ),
        )


def incremental_ids(engine: Engine, now: datetime, today: date) -> tuple[list[int], int | None]:
    """Patients an incremental run must visit, and the last queue id it covers."""
    with engine.connect() as conn:
        queue = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")
        upto = queue[0][0]
        ids: set[int] = set()
        if upto is not None:
            ids.update(
                r[0]
                for r in bulk.fetchall(conn, "SELECT DISTINCT patient_id FROM recompute_queue WHERE id <= ?", (upto,))
            )
        ids.update(
            r[0]
            for r in bulk.fetchall(
                conn, "SELECT patient_id FROM risk_snapshot WHERE recheck_on <= ?", (today.isoformat(),)
            )
        )
        # The partial indexes hold exactly these rows.  SQLite is told to use them: without
        # statistics it prefers ix_alert_status_patient (status = 'open') and scans every open
        # alert — 2.8 s instead of a millisecond at a million patients.
        snooze, escalation = (
            (" INDEXED BY ix_alert_snooze_ends", " INDEXED BY ix_alert_escalation_due") if is_sqlite(engine) else ("", "")
        )
        ids.update(
            r[0]
            for r in bulk.fetchall(
                conn,
                f"SELECT patient_id FROM alert{snooze} WHERE status = 'snoozed' AND snoozed_until <= ? "
                f"UNION SELECT patient_id FROM alert{escalation} WHERE status = 'open' AND escalated_at IS NULL "
                "AND escalate_at <= ?",
                (now, now),
            )
        )
        conn.rollback()
    return sorted(ids), upto


def recompute(
    engine: Engine,
    *,
    full: bool,
    now: datetime,
    trigger: str = "cli",
    owner: str | None = None,
    rules: RuleSet | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    refresh_trends: bool | None = None,
    only: Sequence[int] | None = None,
) -> RunResult:
    """Run a full or incremental recompute as of ``now`` (UTC-aware).

    ``only`` restricts an incremental run to these patients (a form that was
    just saved re-scores its patient at once).
    """
    import time

    started = time.perf_counter()
    today = clinical_day(now)
    ruleset = rules or load_rules()
    kind = "full" if full else "incremental"
    run_id = _start_run(engine, kind, trigger, now, today, ruleset, owner)
    result = RunResult(run_id=run_id, kind=kind, status="running")
    scorer = shared_scorer()
    stale: set[int] = set()
    try:
        if full:
            with engine.connect() as conn:
                total = bulk.fetchall(conn, "SELECT COUNT(*) FROM patient")[0][0]
                upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                conn.rollback()
            size = batch_size or FULL_BATCH

            def next_range(after: int) -> tuple[int, int] | None:
                with engine.connect() as conn:
                    ids = bulk.fetchall(conn, "SELECT id FROM patient WHERE id > ? ORDER BY id LIMIT ?", (after, size))
                    conn.rollback()
                return (ids[0][0], ids[-1][0]) if ids else None

            def prepare(bounds: tuple[int, int]) -> Future:
                lo, hi = bounds
                return pool.submit(
                    _prepare,
                    engine,
                    scorer,
                    ruleset,
                    today,
                    f"p.id BETWEEN {lo} AND {hi}",
                    f"patient_id BETWEEN {lo} AND {hi}",
                )

            # The next batch is read, scored and evaluated on a second thread while this
            # one is written (SQLite in WAL mode reads beside the writer; numpy and the
            # drivers release the GIL for much of it): on 2 cores the two halves overlap.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="recompute-read") as pool:
                bounds = next_range(0)
                pending = prepare(bounds) if bounds else None
                while bounds and pending:
                    prepared = pending.result()
                    following = next_range(bounds[1])
                    pending = prepare(following) if following else None
                    lo, hi = bounds
                    counts = _process(
                        engine,
                        scorer,
                        ruleset,
                        run_id,
                        now,
                        today,
                        f"p.id BETWEEN {lo} AND {hi}",
                        f"patient_id BETWEEN {lo} AND {hi}",
                        f"patient_id BETWEEN {lo} AND {hi}",
                        upto,
                        prepared=prepared,
                    )
                    _accumulate(result, counts)
                    stale.update(counts.get("stale", ()))
                    bounds = following
                    if progress:
                        progress(result.patients, total)
        else:
            if only is not None:
                ids = sorted(set(only))
                with engine.connect() as conn:
                    upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                    conn.rollback()
            else:
                ids, upto = incremental_ids(engine, now, today)
            size = batch_size or INCREMENTAL_BATCH
            for start in range(0, len(ids), size):
                chunk = ids[start : start + size]
                where = bulk.in_list(chunk)
                counts = _process(
                    engine,
                    scorer,
                    ruleset,
                    run_id,
                    now,
                    today,
                    f"p.id IN {where}",
                    f"patient_id IN {where}",
                    f"patient_id IN {where}",
                    upto,
                )
                _accumulate(result, counts)
                stale.update(counts.get("stale", ()))
                if progress:
                    progress(result.patients, len(ids))
        # Patients saved while their batch was being scored: re-score them from their new facts now.
        for _ in range(REVISIT_PASSES):
            if not stale:
                break
            ids = sorted(stale)
            stale.clear()
            with engine.connect() as conn:
                upto = bulk.fetchall(conn, "SELECT MAX(id) FROM recompute_queue")[0][0]
                conn.rollback()
            for start in range(0, len(ids), INCREMENTAL_BATCH):
                where = bulk.in_list(ids[start : start + INCREMENTAL_BATCH])
                counts = _process(
                    engine, scorer, ruleset, run_id, now, today,
                    f"p.id IN {where}", f"patient_id IN {where}", f"patient_id IN {where}", upto, revisit=True,
                )
                _accumulate(result, counts)
                stale.update(counts.get("stale", ()))
        if refresh_trends if refresh_trends is not None else full:
            refresh_trend_tables(engine, today, now=now)
        if full:
            optimize(engine)
        result.status = "success"
    except BaseException as err:
        result.status = "failed"
        result.message = f"{type(err).__name__}: {err}"[:2000]
        result.seconds = time.perf_counter() - started
        try:
            _finish_run(engine, result, utcnow())
        except Exception:  # the database itself may be gone; the original error matters more
            log.exception("could not record the failed run %s", run_id)
        raise
    result.seconds = time.perf_counter() - started
    _finish_run(engine, result, utcnow())
    return result


def _accumulate(result: RunResult, counts: dict[str, int]) -> None:
    if not counts.get("patients"):
        return
    result.batches += 1
    if not counts.get("revisit"):
        result.patients += counts["patients"]
    result.snapshots_written += counts["snapshots_written"]
    result.alerts_opened += counts["alerts_opened"]
    result.alerts_resolved += counts["alerts_resolved"]
    result.alerts_updated += counts["alerts_updated"]


def optimize(engine: Engine) -> None:
    """Refresh planner statistics after big writes (stale statistics made a query 180× slower).

    On SQLite in a write transaction begun IMMEDIATE: ANALYZE writes, and a deferred
    transaction that turns into a writer fails with "database is locked" at once,
    ignoring the busy timeout.
    """
    with writer(engine).connect() as conn, conn.begin():
        if is_sqlite(engine):
            # Not ``PRAGMA optimize``: before SQLite 3.46 it only looks at tables this very
            # connection queried, so a fresh connection analysed nothing and a million-patient
            # store ran without statistics.  A sampled ANALYZE takes 0.2 s there.
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("ANALYZE")
