"""Typed instrument tables and the arithmetic of "possible totals".

Every published instrument is declared as an :class:`InstrumentTable`: its
items with the points of every allowed value, its bands, its range, its
citation and a ``table_version``.  The instrument modules look points up in
these tables (so the reference page, the calculator and the tests read the same
numbers the engine applies), and they report each item as an
:class:`ItemResult` carrying the *set* of points the item can still take.

Unknown is never zero: an item whose input is unknown contributes every point
value its allowed inputs can give, and the instrument's ``possible_totals`` is
the set of all reachable sums.  Within one instrument the items depend on
disjoint inputs (checked instrument by instrument in ``docs/scoring.md``), so
the reachable totals are exactly the sums of one choice per item.  Where two
items would share an unknown (the histology items of Bauer), the caller
enumerates that unknown outside and takes the union.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any


@dataclass(frozen=True)
class Option:
    """One allowed value of an item and its points."""

    value: str
    points: int
    label: str


@dataclass(frozen=True)
class Item:
    """One item (component) of an instrument, with its published points."""

    key: str
    label: str
    options: tuple[Option, ...]
    evidence: str = "[V]"
    note: str = ""

    def points(self, value: str) -> int:
        for option in self.options:
            if option.value == value:
                return option.points
        raise KeyError(f"{self.key}: no option {value!r}")

    def all_points(self) -> frozenset[int]:
        return frozenset(option.points for option in self.options)

    def label_of(self, value: str) -> str:
        for option in self.options:
            if option.value == value:
                return option.label
        raise KeyError(f"{self.key}: no option {value!r}")


@dataclass(frozen=True)
class Band:
    """A band of totals ``low..high`` (inclusive) with its published meaning."""

    code: str
    low: int
    high: int
    meaning: str
    evidence: str = "[V]"

    def contains(self, total: int) -> bool:
        return self.low <= total <= self.high


@dataclass(frozen=True)
class Citation:
    short: str
    reference: str
    doi_or_url: str = ""


@dataclass(frozen=True)
class InstrumentTable:
    """A published instrument as data: items, bands, range and provenance."""

    id: str
    name: str
    citations: tuple[Citation, ...]
    table_version: str
    items: tuple[Item, ...]
    bands: tuple[Band, ...]
    minimum: int
    maximum: int
    higher_is: str  # "better" or "worse"
    reference_section: str
    notes: tuple[str, ...] = ()

    def item(self, key: str) -> Item:
        for item in self.items:
            if item.key == key:
                return item
        raise KeyError(f"{self.id}: no item {key!r}")

    def __post_init__(self) -> None:
        # total -> band code, built once from the bands (frozen, so set directly).
        lookup = {t: band.code for band in self.bands for t in range(band.low, band.high + 1)}
        object.__setattr__(self, "_band_lookup", lookup)

    def band_of(self, totals: Iterable[int]) -> str | None:
        """The band code if every total falls in one band, else ``None``."""
        codes = {self.band_for(total) for total in totals}
        if len(codes) == 1:
            return codes.pop()
        return None

    def band_for(self, total: int) -> str:
        try:
            return self._band_lookup[total]  # type: ignore[attr-defined]
        except KeyError:
            raise ValueError(f"{self.id}: total {total} outside every band") from None

    def band(self, code: str) -> Band:
        for band in self.bands:
            if band.code == code:
                return band
        raise KeyError(code)


@dataclass
class ItemResult:
    """What one item contributed: the input seen and the points it can take."""

    key: str
    label: str
    value: Any
    possible_points: tuple[int, ...]
    note: str = ""
    missing: bool = False
    missing_reason: str = ""  # what the instrument's ``missing`` list says about this item
    ambiguity: str = ""  # a published ambiguity this item enumerates

    @property
    def points(self) -> int | None:
        return self.possible_points[0] if len(self.possible_points) == 1 else None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "value": self.value,
            "points": self.points,
            "possible_points": list(self.possible_points),
        }
        if self.missing:
            out["missing"] = True
        if self.note:
            out["note"] = self.note
        return out


def item_result(
    item: Item,
    value: Any,
    points: Iterable[int],
    *,
    note: str = "",
    missing: bool = False,
    missing_reason: str = "",
    ambiguity: str = "",
) -> ItemResult:
    return ItemResult(
        key=item.key,
        label=item.label,
        value=value,
        possible_points=tuple(sorted(set(points))),
        note=note,
        missing=missing or bool(missing_reason),
        missing_reason=missing_reason,
        ambiguity=ambiguity,
    )


class CannotCompute(str):
    """An item's answer when the instrument cannot be computed at all: the reason, as text."""


@dataclass(frozen=True)
class ItemSpec:
    """One item of an instrument: the function that scores it and the inputs it reads.

    The instrument's ``compute_*`` and the batch scorer both go through these
    specs, so an item's logic exists once; the batch evaluates each item once
    per distinct combination of *its own* inputs, which is what makes a
    million patients cheap.
    """

    key: str
    fn: Any  # (*inputs) -> ItemResult | CannotCompute
    inputs: tuple[str, ...]


def score_items(
    table: InstrumentTable, specs: Sequence[ItemSpec], inputs: dict[str, Any], *, cap: int | None = None
) -> ScoreResult:
    """An instrument's result from its item specs; any :class:`CannotCompute` makes it "cannot compute"."""
    results: list[ItemResult] = []
    reasons: list[str] = []
    for spec in specs:
        outcome = spec.fn(*(inputs[name] for name in spec.inputs))
        if isinstance(outcome, CannotCompute):
            if outcome not in reasons:
                reasons.append(str(outcome))
        else:
            results.append(outcome)
    if reasons:
        return ScoreResult(table, (), [], reasons)
    missing = [r.missing_reason for r in results if r.missing_reason]
    ambiguities = [r.ambiguity for r in results if r.ambiguity and len(r.possible_points) > 1]
    uncapped = possible_sums([r.possible_points for r in results])
    result = ScoreResult(table, possible_sums([r.possible_points for r in results], cap=cap), results, missing,
                         ambiguities)
    if cap is not None and uncapped and max(uncapped) > cap:
        result.extra["capped"] = True
    return result


def possible_sums(point_sets: Sequence[Iterable[int]], *, cap: int | None = None) -> tuple[int, ...]:
    """Every total reachable by choosing one value from each set.

    ``cap`` applies a published ceiling to each total (NESMS).
    """
    totals = {0}
    for points in point_sets:
        options = set(points)
        if not options:
            return ()
        totals = {t + p for t in totals for p in options}
    if cap is not None:
        totals = {min(t, cap) for t in totals}
    return tuple(sorted(totals))


@dataclass
class ScoreResult:
    """One instrument's answer for one patient, able to explain itself."""

    table: InstrumentTable
    possible_totals: tuple[int, ...]
    items: list[ItemResult] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ambiguities: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int | None:
        return self.possible_totals[0] if len(self.possible_totals) == 1 else None

    @cached_property
    def band(self) -> str | None:
        if not self.possible_totals:
            return None
        return self.table.band_of(self.possible_totals)

    @property
    def computable(self) -> bool:
        return bool(self.possible_totals)

    def explanation(self) -> str:
        name = self.table.name
        if not self.possible_totals:
            return f"{name} cannot be computed: " + "; ".join(self.missing) + "."
        parts = []
        for item in self.items:
            pts = item.possible_points
            shown = str(pts[0]) if len(pts) == 1 else "{" + ", ".join(map(str, pts)) + "}"
            value = "unknown" if item.value is None else item.value
            parts.append(f"{item.label} ({value}) {shown}")
        totals = self.possible_totals
        if self.extra.get("capped"):
            parts.append(f"capped at the published ceiling of {self.table.maximum}")
        if len(totals) == 1:
            head = f"{name} {totals[0]}"
        else:
            head = f"{name} could be " + ", ".join(map(str, totals[:-1])) + f" or {totals[-1]}"
        band = self.band
        tail = f"; band {band}" if band else "; band undetermined" if len(totals) > 1 else ""
        return head + " = " + " + ".join(parts) + tail + "."

    def to_dict(self) -> dict[str, Any]:
        """The result object of case-format v1 for this instrument (a fresh top-level dict).

        Results are memoised by the instrument modules, so the body is built once
        per distinct input and shared: callers may add or remove top-level keys
        of the returned dict but must not mutate nested values.
        """
        return dict(self._as_dict)

    @cached_property
    def _as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "total": self.total,
            "possible_totals": list(self.possible_totals),
            "band": self.band,
        }
        if self.band is not None:
            out["band_meaning"] = self.table.band(self.band).meaning
        out["components"] = {item.key: item.to_dict() for item in self.items}
        out["missing"] = list(self.missing)
        if self.ambiguities:
            out["ambiguities"] = list(self.ambiguities)
        out.update(self.extra)
        out["explanation"] = self.explanation()
        out["citation"] = "; ".join(c.short for c in self.table.citations)
        out["table_version"] = self.table.table_version
        return out


def union_results(results: Sequence[ScoreResult], note: str) -> ScoreResult:
    """Merge the results of one instrument computed for several candidate inputs.

    Used when the histology itself is a family ("lung cancer" -> NSCLC or SCLC):
    the reachable totals are the union; each item shows the union of its points.
    """
    if len(results) == 1:
        return results[0]
    first = results[0]
    if any(not r.computable for r in results):
        missing = sorted({m for r in results for m in r.missing})
        return ScoreResult(first.table, (), first.items, missing, [note])
    totals = tuple(sorted({t for r in results for t in r.possible_totals}))
    merged: list[ItemResult] = []
    for index, item in enumerate(first.items):
        points = {p for r in results for p in r.items[index].possible_points}
        values = [r.items[index].value for r in results]
        value = values[0] if all(v == values[0] for v in values) else " or ".join(map(str, values))
        merged.append(ItemResult(item.key, item.label, value, tuple(sorted(points)), item.note, item.missing))
    ambiguities = [note] + sorted({a for r in results for a in r.ambiguities})
    missing = sorted({m for r in results for m in r.missing})
    return ScoreResult(first.table, totals, merged, missing, ambiguities)
