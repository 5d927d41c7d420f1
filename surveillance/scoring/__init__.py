"""The pure scoring core: every decision and prognostic system of the review.

No database, no UI, no clock.  ``score_case`` is the single entry point the CLI,
the recompute pipeline and the calculator share; ``REGISTRY`` lists every
instrument with its tables, citation and version.
"""

from surveillance.scoring.case import CaseError, CaseInput, parse_case
from surveillance.scoring.engine import ENGINE_VERSION, score_case, score_parsed
from surveillance.scoring.registry import REGISTRY, SCORES, get_instrument, master_histology_table

__all__ = [
    "ENGINE_VERSION",
    "REGISTRY",
    "SCORES",
    "CaseError",
    "CaseInput",
    "get_instrument",
    "master_histology_table",
    "parse_case",
    "score_case",
    "score_parsed",
]
