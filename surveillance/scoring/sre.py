"""Skeletal-related event (SRE) definitions (clinical-reference §12).

* Core SRE — pathological fracture (vertebral or non-vertebral), spinal cord
  compression, radiation to bone, surgery to bone — as in the denosumab trials
  (Stopeck 2010, J Clin Oncol 28:5132; Fizazi 2011, Lancet 377:813; Henry 2011,
  J Clin Oncol 29:1125) [R].
* Extended SRE — core plus hypercalcaemia of malignancy, as in the older
  bisphosphonate trials (e.g. Saad 2002, J Natl Cancer Inst 94:1458) [R].  Some
  prostate trials also counted a change of antineoplastic therapy for bone pain;
  that is recorded as its own type and counted by neither definition here.
* Symptomatic skeletal event (SSE; ALSYMPCA, Parker 2013) [R]: radiotherapy to
  relieve bone pain, new symptomatic pathological fracture, spinal cord
  compression, tumour-related orthopaedic surgery.

Each event type is stored separately; "SRE (core)" and "SRE (extended)" are
derived flags, never stored.
"""

from __future__ import annotations

from enum import StrEnum

TABLE_VERSION = "sre-definitions/1"


class SreType(StrEnum):
    PATHOLOGICAL_FRACTURE_VERTEBRAL = "pathological_fracture_vertebral"
    PATHOLOGICAL_FRACTURE_NON_VERTEBRAL = "pathological_fracture_non_vertebral"
    SPINAL_CORD_COMPRESSION = "spinal_cord_compression"
    RADIATION_TO_BONE = "radiation_to_bone"
    SURGERY_TO_BONE = "surgery_to_bone"
    HYPERCALCAEMIA_OF_MALIGNANCY = "hypercalcaemia_of_malignancy"
    ANTINEOPLASTIC_CHANGE_FOR_BONE_PAIN = "antineoplastic_change_for_bone_pain"


class SreDefinition(StrEnum):
    CORE = "core"
    EXTENDED = "extended"
    SSE = "sse"


SRE_LABELS = {
    SreType.PATHOLOGICAL_FRACTURE_VERTEBRAL: "Pathological fracture (vertebral)",
    SreType.PATHOLOGICAL_FRACTURE_NON_VERTEBRAL: "Pathological fracture (non-vertebral)",
    SreType.SPINAL_CORD_COMPRESSION: "Spinal cord compression",
    SreType.RADIATION_TO_BONE: "Radiation to bone",
    SreType.SURGERY_TO_BONE: "Surgery to bone",
    SreType.HYPERCALCAEMIA_OF_MALIGNANCY: "Hypercalcaemia of malignancy",
    SreType.ANTINEOPLASTIC_CHANGE_FOR_BONE_PAIN: "Change of antineoplastic therapy for bone pain",
}

_CORE = frozenset(
    {
        SreType.PATHOLOGICAL_FRACTURE_VERTEBRAL,
        SreType.PATHOLOGICAL_FRACTURE_NON_VERTEBRAL,
        SreType.SPINAL_CORD_COMPRESSION,
        SreType.RADIATION_TO_BONE,
        SreType.SURGERY_TO_BONE,
    }
)

#: Event types counted by each definition.  SSE counts fractures only when
#: symptomatic and radiotherapy only for pain: those qualifiers live on the event.
DEFINITIONS: dict[SreDefinition, frozenset[SreType]] = {
    SreDefinition.CORE: _CORE,
    SreDefinition.EXTENDED: _CORE | {SreType.HYPERCALCAEMIA_OF_MALIGNANCY},
    SreDefinition.SSE: _CORE,
}

DEFINITION_SOURCES = {
    SreDefinition.CORE: "Stopeck 2010; Fizazi 2011; Henry 2011 (denosumab trials) [R]",
    SreDefinition.EXTENDED: "Saad 2002 and other bisphosphonate trials [R]",
    SreDefinition.SSE: "Parker 2013 (ALSYMPCA) [R]; fractures must be symptomatic, radiotherapy for pain",
}


def is_sre(event_type: SreType | str, definition: SreDefinition | str = SreDefinition.CORE) -> bool:
    """Whether an event of this type counts as an SRE under ``definition``."""
    return SreType(event_type) in DEFINITIONS[SreDefinition(definition)]
