"""The cohort extract: the patients matching the caseload's filters, with their scores, tier and open alerts.

Two forms, by role (``surveillance.access``):

* **physician** — one row per active patient of her scope (the department)
  matching the filters (tier, primary site, assigned nurse, a rule with an
  open alert), with identifiers, every score's possible totals and band, the
  tier, what is due and the open alerts.  Unlike the caseload it includes
  patients without open alerts.  At most :data:`COHORT_LIMIT` rows
  (``shared/design.md``: a table never sends more than ~10k rows eagerly);
  the extract says when it was cut.  Identifiable: exported through
  :mod:`surveillance.disclosure`, so every extract is an audited disclosure.
* **lead** — no identifiers: counts of active patients by primary site and
  tier, and with/without open alerts, with the Trends page's small-cell rule
  (``surveillance.trends.suppress``: counts 1–4 shown as ``<5``, and
  complementary cells hidden so no hidden count follows from a total).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from sqlalchemy import text
from sqlalchemy.engine import Engine

from surveillance.access import Action, Identity, PermissionDenied, Role, patient_scope, require
from surveillance.reports import totals_phrase
from surveillance.rules.engine import totals_of
from surveillance.trend_tables import NO_SITE
from surveillance.trends import show_counts, suppress

#: The most rows one identifiable cohort extract holds.
COHORT_LIMIT = 10_000

#: Risk tiers as the pipeline stores them (``risk_snapshot.tier``), highest first.
TIERS = ("high", "intermediate", "low", "screening", "none")

#: Instruments with possible totals and a band in ``risk_snapshot`` (column stem, label).
SCORES = (
    ("tomita", "Tomita"),
    ("tokuhashi", "Tokuhashi (revised)"),
    ("bauer", "Bauer"),
    ("modified_bauer", "Bauer (modified)"),
    ("nesms", "NESMS"),
    ("katagiri", "Katagiri (new)"),
)

#: The columns of the identifiable extract, in order.
COLUMNS = [
    "mrn",
    "family_name",
    "given_name",
    "birth_date",
    "sex",
    "department",
    "primary_site",
    "tier",
    "priority",
    "lesions",
    "sins_worst",
    "sins_worst_category",
    "bilsky_worst",
    *[f"{stem}{suffix}" for stem, _ in SCORES for suffix in ("", "_band")],
    "tes_screen",
    "locomo_types",
    "last_imaging_on",
    "next_imaging_due",
    "next_bma_due",
    "open_alerts",
    "critical_alerts",
    "open_alert_rules",
]


def possible(mask: int | None) -> str:
    """Possible totals of a bit mask as ``8, 9 or 11``; ``unknown`` when none can be computed (never 0)."""
    return totals_phrase(totals_of(int(mask or 0)), none="unknown")


def _filters(
    tier: str | None, primary_site: str | None, nurse_id: int | None, rule_id: str | None
) -> tuple[list[str], dict]:
    where, params = [], {}
    if tier:
        if tier not in TIERS:
            raise ValueError(f"unknown tier {tier!r}")
        where.append("s.tier = :tier")
        params["tier"] = tier
    if primary_site:
        where.append("p.primary_site = :primary_site")
        params["primary_site"] = primary_site
    if nurse_id is not None:
        where.append("p.assigned_nurse_id = :nurse_id")
        params["nurse_id"] = int(nurse_id)
    if rule_id:
        where.append(
            "EXISTS (SELECT 1 FROM alert f WHERE f.patient_id = p.id AND f.rule_id = :rule_id AND f.status = 'open')"
        )
        params["rule_id"] = rule_id
    return where, params


def cohort_patients(
    engine: Engine,
    identity: Identity,
    *,
    tier: str | None = None,
    primary_site: str | None = None,
    nurse_id: int | None = None,
    rule_id: str | None = None,
    limit: int = COHORT_LIMIT,
) -> tuple[list[int], list[list[Any]], bool]:
    """(patient ids, rows in :data:`COLUMNS` order, cut at ``limit``) of the identity's matching active patients."""
    require(identity, Action.EXPORT)
    if identity.role != Role.PHYSICIAN:
        raise PermissionDenied("the identifiable cohort extract is for physicians")
    scope, params = patient_scope(identity)
    where, extra = _filters(tier, primary_site, nurse_id, rule_id)
    params = dict(params, **extra, active=True, limit=int(limit) + 1)
    score_cols = ", ".join(f"s.{stem}_mask, s.{stem}_band" for stem, _ in SCORES)
    sql = (
        "SELECT p.id, p.mrn, p.family_name, p.given_name, p.birth_date, p.sex, p.department, p.primary_site, "
        "s.tier, s.priority, s.lesion_count, s.sins_worst_mask, s.sins_worst_category, s.bilsky_worst, "
        f"{score_cols}, s.tes_screen, s.locomo_types, s.last_imaging_on, s.next_imaging_due, s.next_bma_due, "
        "s.open_alerts, s.critical_alerts FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id "
        f"WHERE s.active = :active AND {' AND '.join([scope, *where])} "
        "ORDER BY s.priority DESC, p.id LIMIT :limit"
    )
    with engine.connect() as conn:
        found = conn.execute(text(sql), params).all()
        cut = len(found) > limit
        found = found[:limit]
        ids = [int(r[0]) for r in found]
        rules: dict[int, list[str]] = {}
        for start in range(0, len(ids), 900):  # bound parameter count (SQLite allows 32k; stay well under)
            chunk = ids[start : start + 900]
            marks = ", ".join(f":i{k}" for k in range(len(chunk)))
            for pid, rule in conn.execute(
                text(
                    f"SELECT patient_id, rule_id FROM alert WHERE status = 'open' AND patient_id IN ({marks}) "
                    "ORDER BY patient_id, rule_id"
                ),
                {f"i{k}": v for k, v in enumerate(chunk)},
            ):
                rules.setdefault(int(pid), []).append(rule)
    rows = []
    for r in found:
        (
            pid,
            mrn,
            family,
            given,
            birth,
            sex,
            department,
            site,
            tier_,
            priority,
            lesions,
            sins_mask,
            sins_cat,
            bilsky,
        ) = r[:14]
        scores = []
        for k in range(len(SCORES)):
            mask, band = r[14 + 2 * k], r[15 + 2 * k]
            scores += [possible(mask), band or "unknown"]
        tes, locomo, last_imaging, next_imaging, next_bma, open_alerts, critical = r[14 + 2 * len(SCORES) :]
        locomo_text = ", ".join(f"type {t}" for t in (1, 2, 3) if int(locomo or 0) >> (t - 1) & 1)
        rows.append(
            [
                mrn,
                family,
                given,
                birth,
                sex,
                department,
                site,
                tier_,
                priority,
                lesions,
                possible(sins_mask) if lesions else "no lesion",
                sins_cat or "",
                bilsky or "",
                *scores,
                tes or "",
                locomo_text,
                last_imaging,
                next_imaging,
                next_bma,
                open_alerts,
                critical,
                "; ".join(rules.get(int(pid), [])),
            ]
        )
    return ids, rows, cut


def cohort_counts(
    engine: Engine, identity: Identity, *, primary_site: str | None = None, department: str | None = None
) -> pd.DataFrame:
    """Active patients by primary site (rows, plus ``all``) and tier / open alerts (columns): raw counts."""
    require(identity, Action.VIEW_TRENDS)
    where, params = ["s.active = :active"], {"active": True}
    if primary_site == NO_SITE:
        where.append("p.primary_site IS NULL")
    elif primary_site:
        where.append("p.primary_site = :site")
        params["site"] = primary_site
    if department:
        where.append("p.department = :department")
        params["department"] = department
    sql = (
        f"SELECT COALESCE(p.primary_site, '{NO_SITE}') AS site, s.tier, "
        "CASE WHEN s.open_alerts > 0 THEN 1 ELSE 0 END AS alerted, COUNT(*) AS n "
        f"FROM risk_snapshot s JOIN patient p ON p.id = s.patient_id WHERE {' AND '.join(where)} "
        f"GROUP BY COALESCE(p.primary_site, '{NO_SITE}'), s.tier, CASE WHEN s.open_alerts > 0 THEN 1 ELSE 0 END"
    )
    with engine.connect() as conn:
        found = pd.DataFrame(conn.execute(text(sql), params).all(), columns=["site", "tier", "alerted", "n"])
    columns = [*TIERS, "with_open_alerts", "without_open_alerts", "total"]
    sites = sorted(set(found["site"])) if not found.empty else []
    table = pd.DataFrame(0, index=[*sites, "all"], columns=columns, dtype="int64")
    for site, tier, alerted, n in found.itertuples(index=False):
        n = int(n)
        table.loc[site, tier if tier in TIERS else "none"] += n
        table.loc[site, "with_open_alerts" if int(alerted) else "without_open_alerts"] += n
        table.loc[site, "total"] += n
    table.loc["all"] = table.drop(index="all").sum()
    return table


def cohort_counts_shown(counts: pd.DataFrame) -> pd.DataFrame:
    """The count table as the lead may see it: small cells ``<5``, complementary cells ``•`` (Trends' rule)."""
    suppression = suppress(
        counts,
        row_groups=[(list(TIERS), "total"), (["with_open_alerts", "without_open_alerts"], "total")],
        total_row="all",
    )
    shown = show_counts(counts, suppression)
    shown.index.name = "primary_site"
    return shown
