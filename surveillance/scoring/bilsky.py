"""Bilsky epidural spinal cord compression (ESCC) scale, grades and groups.

Bilsky MH et al., J Neurosurg Spine 2010;13:324–328 (clinical-reference §3) [V];
definitions as reproduced by Radiopaedia and sophiewell ``lib/bilsky-escc-v604.js``.

Scope: the six grades (strings: "1a" is not "1"), and the low/high grouping used
by NOMS.  Grade 1c is "controversial" (Radiopaedia) [DISC §18.4]: its group is
*undetermined*, so NOMS enumerates both.
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.scoring.vocab import BilskyGrade

TABLE_VERSION = "bilsky-2010/1"
CITATION = "Bilsky MH et al. J Neurosurg Spine 2010;13(3):324–328. doi:10.3171/2010.3.SPINE09459"


@dataclass(frozen=True)
class BilskyRow:
    grade: BilskyGrade
    definition: str
    groups: tuple[str, ...]  # ("low",), ("high",) or ("low", "high") when undetermined


GRADES: tuple[BilskyRow, ...] = (
    BilskyRow(BilskyGrade.G0, "Bone-only disease", ("low",)),
    BilskyRow(BilskyGrade.G1A, "Epidural impingement without deformation of the thecal sac", ("low",)),
    BilskyRow(BilskyGrade.G1B, "Thecal sac deformed, spinal cord not abutted", ("low",)),
    BilskyRow(
        BilskyGrade.G1C,
        "Thecal sac deformed and spinal cord abutted, but cord not compressed",
        ("low", "high"),
    ),
    BilskyRow(BilskyGrade.G2, "Cord compressed, CSF still visible around the cord", ("high",)),
    BilskyRow(BilskyGrade.G3, "Cord compressed, no CSF visible around the cord", ("high",)),
)

GROUP_MEANING = {
    "low": "Low grade (0, 1a, 1b): radiation is the initial treatment",
    "high": "High grade (2, 3): decompression before radiation unless highly radiosensitive",
}

CONTEXT_NOTE = (
    "Context only [V2]: at least half of patients had moderate-to-severe paralysis at grade ≥ 1b "
    "for C1–T2 lesions and at grade ≥ 1c for T3–L5 lesions (as reported by sophiewell from a cited analysis)."
)


def escc_groups(grade: BilskyGrade) -> tuple[str, ...]:
    """The ESCC group(s) a grade may belong to; 1c is undetermined."""
    for row in GRADES:
        if row.grade == grade:
            return row.groups
    raise KeyError(grade)


def is_high_grade(grade: BilskyGrade) -> bool:
    """Definitely high grade (2 or 3) — the level that alerts act on."""
    return escc_groups(grade) == ("high",)


def grade_rank(grade: BilskyGrade) -> int:
    """Order of severity 0..5, for "≥ 1b" style comparisons."""
    return [row.grade for row in GRADES].index(grade)
