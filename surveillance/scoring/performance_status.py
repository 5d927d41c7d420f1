"""ECOG and Karnofsky performance status, the mapping between them, and Frankel grades.

Sources (clinical-reference §1):

* ECOG: Oken MM et al., Am J Clin Oncol 1982;5:649.  Equivalent KPS per the
  standard table reproduced at aihaoyisheng.com/en/tools/performance_status and
  myelomacomorbidityindex.org [V].  Empirical conversions differ (Prasad et al.,
  World J Clin Oncol 2018, doi 10.5306/wjco.v9.i7.140) [DISC]: a converted value
  is always labelled "converted", and ECOG 1 straddles KPS 70 and 80.
* Frankel grade: Frankel HL et al., Paraplegia 1969;7:179 [R]; Tokuhashi palsy
  points from the NICE CG75 reproduction of Tokuhashi 2005 [V].

Scope: the tables, and the conversions each instrument needs.  No instrument
converts silently: Tokuhashi uses KPS natively and Katagiri uses ECOG natively;
each falls back to the other scale only when its own is missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from surveillance.scoring.vocab import Frankel

TABLE_VERSION = "oken-1982+kps-standard/1"
FRANKEL_TABLE_VERSION = "frankel-1969/1"


@dataclass(frozen=True)
class EcogRow:
    ecog: int
    description: str
    kps_low: int
    kps_high: int


#: ECOG grade -> description and the equivalent KPS range (clinical-reference §1.1).
ECOG_TABLE: tuple[EcogRow, ...] = (
    EcogRow(0, "Fully active", 90, 100),
    EcogRow(1, "Restricted in strenuous activity; ambulatory; light work", 70, 80),
    EcogRow(2, "Ambulatory and capable of all self-care; up more than 50% of waking hours", 50, 60),
    EcogRow(3, "Limited self-care; in bed or chair more than 50% of waking hours", 30, 40),
    EcogRow(4, "Completely disabled", 10, 20),
    EcogRow(5, "Dead", 0, 0),
)


def ecog_to_kps_values(ecog: int) -> tuple[int, ...]:
    """The KPS values (steps of ten) equivalent to an ECOG grade: a converted range."""
    row = ECOG_TABLE[ecog]
    return tuple(range(row.kps_low, row.kps_high + 1, 10))


def kps_to_ecog(kps: int) -> int:
    """The ECOG grade whose equivalent KPS range contains ``kps`` (converted)."""
    for row in ECOG_TABLE:
        if row.kps_low <= kps <= row.kps_high:
            return row.ecog
    raise ValueError(f"KPS {kps} is not a multiple of ten between 0 and 100")


@dataclass(frozen=True)
class FrankelRow:
    grade: Frankel
    meaning: str
    tokuhashi_palsy: str  # "complete" | "incomplete" | "none"


FRANKEL_TABLE: tuple[FrankelRow, ...] = (
    FrankelRow(Frankel.A, "Complete: no motor or sensory function below the level", "complete"),
    FrankelRow(Frankel.B, "Sensory only", "complete"),
    FrankelRow(Frankel.C, "Motor present but useless", "incomplete"),
    FrankelRow(Frankel.D, "Motor useful", "incomplete"),
    FrankelRow(Frankel.E, "Normal", "none"),
)


def frankel_palsy(grade: Frankel) -> str:
    for row in FRANKEL_TABLE:
        if row.grade == grade:
            return row.tokuhashi_palsy
    raise KeyError(grade)


def has_neurological_deficit(grade: Frankel) -> bool:
    """Frankel A–D is a deficit (it sets urgency; clinical-reference §9.2)."""
    return grade != Frankel.E
