"""NOMS decision framework, per lesion (Laufer I et al., Oncologist 2013;18:744–751; clinical-reference §9).

Decision logic [V] as summarised by the Laufer 2013 abstract (read.qxmd.com
23709750) and the Bilsky & Laufer review (synapse.mskcc.org/works/4013):
radiosensitive tumours get cEBRT whatever the cord compression; radioresistant
tumours without high-grade compression get SRS; with high-grade compression,
separation surgery then SRS; mechanical instability (SINS) is assessed
separately; every option is limited by what the patient can tolerate.

Radiosensitivity lists [R] as usually quoted from Laufer 2013.  Histologies the
lists do not classify (SCLC, GI except colon, gynaecological except ovary,
bladder, head and neck, unknown primary; §18.18) enumerate both branches and a
single recommendation is given only when both agree.  Rectum is treated as
colon (radioresistant, flagged) and osteosarcoma as sarcoma.  Bilsky 1c is
undetermined between the low and high groups [§18.4].  Neurological deficit
does not change the recommendation for radiosensitive tumours: it sets urgency.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from surveillance.scoring import bilsky
from surveillance.scoring.vocab import BilskyGrade, PrimarySite

TABLE_VERSION = "laufer-2013/1"
CITATIONS = (
    "Laufer I et al. Oncologist 2013;18(6):744–751. doi:10.1634/theoncologist.2012-0293",
    "Bilsky MH et al. J Neurosurg Spine 2010;13:324 (ESCC scale)",
    "Fisher CG et al. Spine 2010;35:E1221 (SINS)",
)

CANDIDATE_TOKENS = (
    "cEBRT",
    "SRS",
    "stabilization+cEBRT",
    "stabilization+SRS",
    "separation_surgery+SRS",
    "separation_surgery_stabilization+SRS",
)
FLAG_CONSULT = "potentially_unstable_surgical_consultation"
FLAG_UNFIT = "unstable_unfit_for_stabilization"
FLAG_MEANINGS = {
    FLAG_CONSULT: "SINS 7–12: surgical consultation recommended (no fixed NOMS action)",
    FLAG_UNFIT: "Unstable but not fit for stabilization: bracing and supportive care",
}

#: Radiosensitivity to conventional external-beam radiotherapy (§9.1).
#: Sites absent from this table are not classified: both branches are enumerated.
RADIOSENSITIVITY: dict[PrimarySite, tuple[str, str]] = {
    PrimarySite.LYMPHOMA: ("sensitive", "[R]"),
    PrimarySite.MYELOMA: ("sensitive", "[R] myeloma / plasmacytoma"),
    PrimarySite.TESTIS_GERM_CELL: ("sensitive", "[R] seminoma"),
    PrimarySite.BREAST: ("sensitive", "[R]"),
    PrimarySite.PROSTATE: ("sensitive", "[R]"),
    PrimarySite.OVARY: ("sensitive", "[R]"),
    PrimarySite.NEUROENDOCRINE: ("sensitive", "[R] neuroendocrine carcinoma"),
    PrimarySite.KIDNEY: ("resistant", "[R]"),
    PrimarySite.THYROID: ("resistant", "[R]"),
    PrimarySite.LIVER: ("resistant", "[R]"),
    PrimarySite.COLON: ("resistant", "[R]"),
    PrimarySite.RECTUM: ("resistant", "[CONV] rectal adenocarcinoma treated as colon (flagged)"),
    PrimarySite.LUNG_NSCLC: ("resistant", "[R]"),
    PrimarySite.SOFT_TISSUE_SARCOMA: ("resistant", "[R]"),
    PrimarySite.OSTEOSARCOMA: ("resistant", "[CONV] treated as sarcoma"),
    PrimarySite.MELANOMA: ("resistant", "[R]"),
}


@dataclass(frozen=True)
class NomsRule:
    radiosensitivity: str  # "sensitive" | "resistant"
    escc: str  # "any" | "low" | "high"
    sins: str  # "stable" | "potentially_unstable" | "unstable"
    fit: str  # "any" | "fit" | "unfit"
    recommendation: str
    flags: tuple[str, ...] = ()


#: The decision table of clinical-reference §9.2, one row per branch.
DECISION_TABLE: tuple[NomsRule, ...] = (
    NomsRule("sensitive", "any", "stable", "any", "cEBRT"),
    NomsRule("sensitive", "any", "potentially_unstable", "any", "cEBRT", (FLAG_CONSULT,)),
    NomsRule("sensitive", "any", "unstable", "fit", "stabilization+cEBRT"),
    NomsRule("sensitive", "any", "unstable", "unfit", "cEBRT", (FLAG_UNFIT,)),
    NomsRule("resistant", "low", "stable", "any", "SRS"),
    NomsRule("resistant", "low", "potentially_unstable", "any", "SRS", (FLAG_CONSULT,)),
    NomsRule("resistant", "low", "unstable", "fit", "stabilization+SRS"),
    NomsRule("resistant", "low", "unstable", "unfit", "SRS", (FLAG_UNFIT,)),
    NomsRule("resistant", "high", "stable", "fit", "separation_surgery+SRS"),
    NomsRule("resistant", "high", "potentially_unstable", "fit", "separation_surgery+SRS", (FLAG_CONSULT,)),
    NomsRule("resistant", "high", "unstable", "fit", "separation_surgery_stabilization+SRS"),
    NomsRule("resistant", "high", "stable", "unfit", "cEBRT"),
    NomsRule("resistant", "high", "potentially_unstable", "unfit", "cEBRT", (FLAG_CONSULT,)),
    NomsRule("resistant", "high", "unstable", "unfit", "cEBRT", (FLAG_UNFIT,)),
)


def decide(radiosensitivity: str, escc_group: str, sins_category: str, fit: bool) -> NomsRule:
    """The one row of the decision table that applies to a fully known branch."""
    fitness = "fit" if fit else "unfit"
    for rule in DECISION_TABLE:
        if (
            rule.radiosensitivity == radiosensitivity
            and rule.escc in ("any", escc_group)
            and rule.sins == sins_category
            and rule.fit in ("any", fitness)
        ):
            return rule
    raise LookupError((radiosensitivity, escc_group, sins_category, fitness))


def radiosensitivities(site: PrimarySite) -> tuple[str, ...]:
    if site in RADIOSENSITIVITY:
        return (RADIOSENSITIVITY[site][0],)
    return ("sensitive", "resistant")


@dataclass(frozen=True)
class NomsResult:
    candidates: tuple[str, ...]
    flags: tuple[str, ...]
    branches: tuple[dict[str, Any], ...]
    missing: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def recommendation(self) -> str | None:
        return self.candidates[0] if len(self.candidates) == 1 else None

    def explanation(self) -> str:
        if not self.candidates:
            return "NOMS cannot be computed: " + "; ".join(self.missing) + "."
        if self.recommendation:
            text = f"NOMS: {self.recommendation}"
        else:
            text = "NOMS undetermined between " + " and ".join(self.candidates)
        if self.notes:
            text += " (" + "; ".join(self.notes) + ")"
        return text + "."


@lru_cache(maxsize=16384)
def compute_noms(
    sites: tuple[PrimarySite, ...],
    bilsky_escc: BilskyGrade | None,
    sins_categories: tuple[str, ...],
    fit_for_surgery: bool | None,
) -> NomsResult:
    """NOMS for one lesion over every reachable branch of the unknowns."""
    missing = []
    if not sites:
        missing.append("primary histology unknown (radiosensitivity)")
    if bilsky_escc is None:
        missing.append("ESCC (Bilsky) grade not recorded: NOMS has no default")
    if missing:
        return NomsResult((), (), (), tuple(missing), ())

    notes: list[str] = []
    sens = sorted({s for site in sites for s in radiosensitivities(site)})
    unclassified = [site for site in sites if site not in RADIOSENSITIVITY]
    if unclassified:
        notes.append("radiosensitivity not classified for " + ", ".join(unclassified) + ": both branches")
    for site in sites:
        if site in RADIOSENSITIVITY and "CONV" in RADIOSENSITIVITY[site][1]:
            notes.append(RADIOSENSITIVITY[site][1])
    groups = bilsky.escc_groups(bilsky_escc)
    if len(groups) > 1:
        notes.append("ESCC 1c: low- vs high-grade handling is controversial")
    fits = (fit_for_surgery,) if fit_for_surgery is not None else (True, False)
    if fit_for_surgery is None:
        notes.append("fitness for surgery not recorded: both branches")

    branches = []
    candidates: set[str] = set()
    flags: set[str] = set()
    for rs in sens:
        for group in groups:
            for category in sins_categories:
                for fit in fits:
                    rule = decide(rs, group, category, fit)
                    candidates.add(rule.recommendation)
                    flags.update(rule.flags)
                    branches.append(
                        {
                            "radiosensitivity": rs,
                            "escc_group": group,
                            "sins_category": category,
                            "fit_for_surgery": fit,
                            "recommendation": rule.recommendation,
                            "flags": list(rule.flags),
                        }
                    )
    return NomsResult(tuple(sorted(candidates)), tuple(sorted(flags)), tuple(branches), (), tuple(notes))
