"""Cancer Locomo: locomotive syndrome in people with cancer (clinical-reference §13).

The Japanese Orthopaedic Association's concept (Kawano H, Int J Clin Oncol 2022,
doi 10.1007/s10147-022-02194-w; Hirahata et al., Int J Clin Oncol 2023, doi
10.1007/s10147-023-02312-2).  The three types below are as given in the review;
the JOA classification text itself was not retrieved [R].

* Type 1 — caused by the cancer itself.
* Type 2 — related to cancer treatment.
* Type 3 — concurrent (coexisting) musculoskeletal disease.

A patient can have several types at once: each recorded condition keeps its own
type, and the patient's types are the set of types of conditions active on the
day asked.  Pure: the date is a parameter, never the clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

TABLE_VERSION = "joa-cancer-locomo-review/1"


class LocomoCondition(StrEnum):
    BONE_METASTASIS = "bone_metastasis"
    BONE_OR_SOFT_TISSUE_SARCOMA = "bone_or_soft_tissue_sarcoma"
    CACHEXIA = "cachexia"
    SARCOPENIA_DISUSE_WEAKNESS = "sarcopenia_disuse_weakness"
    SECONDARY_OSTEOPOROSIS = "secondary_osteoporosis"
    CHEMOTHERAPY_INDUCED_PERIPHERAL_NEUROPATHY = "chemotherapy_induced_peripheral_neuropathy"
    LYMPHOEDEMA = "lymphoedema"
    JOINT_CONTRACTURE = "joint_contracture"
    OSTEOPOROSIS = "osteoporosis"
    LUMBAR_SPINAL_CANAL_STENOSIS = "lumbar_spinal_canal_stenosis"
    OSTEOARTHRITIS = "osteoarthritis"


#: Condition -> Cancer Locomo type (the review's value set, §13).
CONDITION_TYPE: dict[LocomoCondition, int] = {
    LocomoCondition.BONE_METASTASIS: 1,
    LocomoCondition.BONE_OR_SOFT_TISSUE_SARCOMA: 1,
    LocomoCondition.CACHEXIA: 1,
    LocomoCondition.SARCOPENIA_DISUSE_WEAKNESS: 2,
    LocomoCondition.SECONDARY_OSTEOPOROSIS: 2,
    LocomoCondition.CHEMOTHERAPY_INDUCED_PERIPHERAL_NEUROPATHY: 2,
    LocomoCondition.LYMPHOEDEMA: 2,
    LocomoCondition.JOINT_CONTRACTURE: 2,
    LocomoCondition.OSTEOPOROSIS: 3,
    LocomoCondition.LUMBAR_SPINAL_CANAL_STENOSIS: 3,
    LocomoCondition.OSTEOARTHRITIS: 3,
}

TYPE_LABELS = {
    1: "Type 1: caused by the cancer itself",
    2: "Type 2: related to cancer treatment",
    3: "Type 3: concurrent musculoskeletal disease",
}


@dataclass(frozen=True)
class ConditionRecord:
    condition: LocomoCondition
    onset: date | None = None
    resolved: date | None = None

    def active_on(self, day: date) -> bool:
        started = self.onset is None or self.onset <= day
        return started and (self.resolved is None or self.resolved > day)


def locomo_type(condition: LocomoCondition | str) -> int:
    return CONDITION_TYPE[LocomoCondition(condition)]


def compute_locomo_types(
    conditions: Iterable[ConditionRecord | LocomoCondition | str], on: date | None = None
) -> tuple[int, ...]:
    """The sorted Cancer Locomo types of the conditions active on ``on``.

    Plain condition codes are taken as active.  With ``on`` omitted, every
    record without a resolution date counts.
    """
    types = set()
    for record in conditions:
        if not isinstance(record, ConditionRecord):
            record = ConditionRecord(LocomoCondition(record))
        if on is None:
            active = record.resolved is None
        else:
            active = record.active_on(on)
        if active:
            types.add(CONDITION_TYPE[record.condition])
    return tuple(sorted(types))
