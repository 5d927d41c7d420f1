"""Weinstein–Boriani–Biagini (WBB) staging and the en-bloc options it suggests.

Boriani S, Weinstein JN, Biagini R. Spine 1997;22:1036–1044; Hart RA et al.
1997 (clinical-reference §11) [V2]/[R].  The review's own zones are kept beside
Boriani's and labelled [DISC §18.20]: sagittal 2–5 / 7–11 versus Boriani 3–5 /
8–10; TES "mainly in zones 5–9"; COPPER 1–5 / 8–12 in the review's text and
1–5 / 7–12 in its Figure 1 legend.

Numbering: the original runs clockwise from the bisected spinous process; the
Spine Oncology Study Group's runs counter-clockwise.  Zones are converted to the
original (zone ``z`` ↔ ``13 − z``) before any rule is applied, so the stored
convention is never lost and never guessed.

This is a **screen, not a rule**: it lists which published zone patterns the
tumour fits; the surgeon decides.
"""

from __future__ import annotations

from dataclasses import dataclass

TABLE_VERSION = "boriani-1997+review/1"
CITATION = "Boriani S, Weinstein JN, Biagini R. Spine 1997;22(9):1036–1044"

LAYERS = {
    "A": "Extraosseous soft tissue",
    "B": "Intraosseous, superficial",
    "C": "Intraosseous, deep",
    "D": "Extraosseous, extradural",
    "E": "Extraosseous, intradural",
}


@dataclass(frozen=True)
class ZonePattern:
    procedure: str
    zones: tuple[int, ...]
    source: str  # "Boriani 1997" or "review"
    evidence: str
    note: str = ""


def _arc(first: int, last: int) -> tuple[int, ...]:
    """Zones from ``first`` to ``last`` clockwise, wrapping past 12."""
    zones = [first]
    while zones[-1] != last:
        zones.append(zones[-1] % 12 + 1)
    return tuple(zones)


PATTERNS: tuple[ZonePattern, ...] = (
    ZonePattern(
        "vertebrectomy (en-bloc body resection, TES-type)",
        _arc(4, 8),
        "Boriani 1997",
        "[R]",
        "at least one pedicle free",
    ),
    ZonePattern(
        "vertebrectomy (en-bloc body resection, TES-type)",
        _arc(5, 9),
        "Boriani 1997",
        "[R]",
        "at least one pedicle free",
    ),
    ZonePattern("sagittal en-bloc resection", _arc(3, 5), "Boriani 1997", "[R]", "eccentric tumour"),
    ZonePattern("sagittal en-bloc resection", _arc(8, 10), "Boriani 1997", "[R]", "eccentric tumour"),
    ZonePattern("posterior arch resection", _arc(10, 3), "Boriani 1997", "[R]"),
    ZonePattern(
        "TES", _arc(5, 9), "review", "[DISC]", "review: 'mainly located in the vertebral body within zones 5–9'"
    ),
    ZonePattern("sagittal en-bloc resection", _arc(2, 5), "review", "[DISC]"),
    ZonePattern("sagittal en-bloc resection", _arc(7, 11), "review", "[DISC]"),
    ZonePattern("COPPER", _arc(1, 5), "review", "[DISC]", "review text and Figure 1 legend"),
    ZonePattern("COPPER", _arc(8, 12), "review", "[DISC]", "review text"),
    ZonePattern("COPPER", _arc(7, 12), "review", "[DISC]", "review Figure 1 legend (modified COPPER)"),
)


def to_boriani(zones: tuple[int, ...], numbering: str) -> tuple[int, ...]:
    """Zones in the original clockwise numbering."""
    if numbering == "boriani_clockwise":
        return tuple(sorted(zones))
    if numbering == "sosg_counterclockwise":
        return tuple(sorted(13 - z for z in zones))
    raise ValueError(f"unknown WBB numbering {numbering!r}")


def compute_wbb_options(zones: tuple[int, ...], numbering: str, layers: tuple[str, ...] | None = None) -> dict:
    """Every published zone pattern that contains all of the tumour's zones."""
    original = to_boriani(zones, numbering)
    options = []
    for pattern in PATTERNS:
        if set(original) <= set(pattern.zones):
            options.append(
                {
                    "procedure": pattern.procedure,
                    "zones": f"{pattern.zones[0]}–{pattern.zones[-1]}",
                    "source": pattern.source,
                    "evidence": pattern.evidence,
                    "note": pattern.note,
                }
            )
    notes = []
    if layers and "E" in layers:
        notes.append("intradural extension (layer E)")
    return {
        "zones_original_numbering": list(original),
        "numbering_recorded": numbering,
        "layers": list(layers or ()),
        "options": options,
        "notes": notes,
        "screen_only": True,
        "citation": CITATION,
        "table_version": TABLE_VERSION,
    }
