"""The registry of instruments: one list that the tests, the CLI, the calculator
and the reference page all read.

Each :class:`Instrument` names its module's own tables (the single source of
truth for its points); :meth:`Instrument.reference_tables` renders them as plain
rows for display, and the master histology view (clinical-reference §15) is
*derived* here by asking every instrument module, never typed a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from surveillance import locomo
from surveillance.scoring import (
    bauer,
    bilsky,
    katagiri,
    lmnop,
    nesms,
    noms,
    performance_status,
    sins,
    sre,
    surgery_screen,
    tes,
    tokuhashi,
    tomita,
    wbb,
)
from surveillance.scoring.ranges import InstrumentTable
from surveillance.scoring.vocab import PRIMARY_SITE_LABELS, PrimarySite


@dataclass(frozen=True)
class RefTable:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Instrument:
    id: str
    name: str
    kind: str  # "score" (points and bands), "decision", "grade", "framework", "definition"
    citation: str
    table_version: str
    reference_section: str
    summary: str
    table: InstrumentTable | None = None
    extra_tables: Callable[[], list[RefTable]] = field(default=lambda: [])
    result_key: str | None = None  # key in the result object of ``score``

    def reference_tables(self) -> list[RefTable]:
        tables: list[RefTable] = []
        if self.table is not None:
            rows = tuple(
                (item.label, option.label, str(option.points), item.evidence)
                for item in self.table.items
                for option in item.options
            )
            tables.append(RefTable("Items and points", ("Item", "Value", "Points", "Evidence"), rows))
            bands = tuple(
                (
                    band.code,
                    f"{band.low}–{band.high}" if band.low != band.high else str(band.low),
                    band.meaning,
                    band.evidence,
                )
                for band in self.table.bands
            )
            tables.append(RefTable("Bands", ("Band", "Totals", "Published meaning", "Evidence"), bands))
        return tables + self.extra_tables()


def _sins_levels() -> list[RefTable]:
    location = sins.TABLE.item("location")
    rows = tuple((lv.value, cls, str(location.points(cls))) for lv, cls in sins.LEVEL_CLASS.items())
    return [
        RefTable("Location class of every level (Coccyx is not defined by SINS)", ("Level", "Class", "Points"), rows)
    ]


def _site_rows(mapping: Callable[[PrimarySite], str]) -> tuple[tuple[str, ...], ...]:
    return tuple((PRIMARY_SITE_LABELS[site], site.value, mapping(site)) for site in PrimarySite)


def _tomita_growth() -> list[RefTable]:
    growth = tomita.TABLE.item("primary_growth")

    def show(site):
        if site in tomita.GROWTH_CLASS:
            cls, evidence = tomita.GROWTH_CLASS[site]
            return f"{cls} ({growth.points(cls)}) {evidence}"
        return "not named: {1, 2, 4} until a clinician assigns a class"

    return [RefTable("Growth class by histology", ("Histology", "Code", "Class"), _site_rows(show))]


def _tokuhashi_sites() -> list[RefTable]:
    item = tokuhashi.TABLE.item("primary_site")

    def show(site):
        groups = tokuhashi.PRIMARY_GROUP.get(site, ("others",))
        return " or ".join(f"{item.points(g)} ({item.label_of(g)})" for g in groups)

    return [RefTable("Primary-site points by histology", ("Histology", "Code", "Points"), _site_rows(show))]


def _katagiri_tables() -> list[RefTable]:
    labs = tuple(
        (label, tier, ("≥ " if op == "ge" else "< ") + f"{threshold:g}", field_name)
        for field_name, label, tier, op, threshold in katagiri.LAB_CUTOFFS
    )
    item = katagiri.TABLE.item("primary_lesion")

    def show(site):
        if site in katagiri.HORMONE_SITES:
            return "slow (0) if hormone-dependent, otherwise moderate (2); unknown → {0, 2}"
        if site == PrimarySite.LUNG_NSCLC:
            return "moderate (2) with molecularly targeted drugs, otherwise rapid (3); unknown → {2, 3}"
        group = katagiri.PRIMARY_GROUP[site]
        return f"{group} ({item.points(group)})"

    return [
        RefTable("Laboratory cut-offs", ("Test", "Tier", "Positive when", "Field (unit in name)"), labs),
        RefTable("Primary-lesion group by histology", ("Histology", "Code", "Group"), _site_rows(show)),
    ]


def _noms_tables() -> list[RefTable]:
    decision = tuple(
        (r.radiosensitivity, r.escc, r.sins, r.fit, r.recommendation, ", ".join(r.flags)) for r in noms.DECISION_TABLE
    )

    def show(site):
        if site in noms.RADIOSENSITIVITY:
            cls, evidence = noms.RADIOSENSITIVITY[site]
            return f"{cls} {evidence}"
        return "not classified: both branches enumerated"

    return [
        RefTable(
            "Decision table (per lesion)",
            ("Radiosensitivity", "ESCC", "SINS", "Fitness", "Recommendation", "Flags"),
            decision,
        ),
        RefTable("Radiosensitivity to cEBRT by histology", ("Histology", "Code", "Class"), _site_rows(show)),
    ]


def _bilsky_table() -> list[RefTable]:
    rows = tuple((row.grade.value, row.definition, " or ".join(row.groups)) for row in bilsky.GRADES)
    return [
        RefTable("ESCC grades", ("Grade", "Definition", "Group"), rows),
        RefTable("Context", ("Note",), ((bilsky.CONTEXT_NOTE,),)),
    ]


def _ps_tables() -> list[RefTable]:
    ecog = tuple((str(r.ecog), r.description, f"{r.kps_low}–{r.kps_high}") for r in performance_status.ECOG_TABLE)
    frankel = tuple((r.grade.value, r.meaning, r.tokuhashi_palsy) for r in performance_status.FRANKEL_TABLE)
    return [
        RefTable("ECOG and equivalent KPS (converted values are labelled)", ("ECOG", "Description", "KPS"), ecog),
        RefTable("Frankel grade", ("Grade", "Meaning", "Tokuhashi palsy"), frankel),
    ]


def _wbb_table() -> list[RefTable]:
    rows = tuple((p.procedure, f"{p.zones[0]}–{p.zones[-1]}", p.source, p.evidence, p.note) for p in wbb.PATTERNS)
    layers = tuple((k, v) for k, v in wbb.LAYERS.items())
    return [
        RefTable(
            "Zone patterns (original clockwise numbering)", ("Procedure", "Zones", "Source", "Evidence", "Note"), rows
        ),
        RefTable("Layers", ("Layer", "Meaning"), layers),
    ]


def _tes_table() -> list[RefTable]:
    rows = (
        ("Solitary spinal metastasis or ≤ 3 contiguous levels", "[R] review"),
        ("Expected survival > 1–2 years (read from Tokuhashi 12–15 or Katagiri low)", "[R] review; [CONV] proxy"),
        ("Favourable histology: renal, thyroid, breast, prostate", "[R] review"),
        ("ECOG 0–1", "[R] review"),
        ("Tomita 2–3 (or selected cases with 4–5)", "[V2]"),
    )
    return [RefTable("Criteria (a screen, not a rule)", ("Criterion", "Evidence"), rows)]


def _surgery_screen_table() -> list[RefTable]:
    rows = tuple((label, proxy) for _key, label, proxy in surgery_screen.ITEMS)
    return [RefTable("Items (information, not a rule)", ("Contraindication", "How it is read"), rows)]


def _lmnop_table() -> list[RefTable]:
    rows = (
        ("L — Location / levels", "Columns involved; number of levels; contiguous or not"),
        ("M — Mechanical instability", "Graded by SINS: 0–6 none; 7–12 consultation; 13–18 stabilization"),
        ("N — Neurology", "Symptomatic ESCC; deficit with high-grade ESCC in a fit patient: decompression then RT"),
        ("O — Oncology", "Histology and radiosensitivity (same lists as NOMS)"),
        ("P — Patient", "Fitness, wishes, prognosis, response to prior therapy"),
    )
    return [RefTable("Axes (not a points score)", ("Axis", "Content"), rows)]


def _sre_table() -> list[RefTable]:
    rows = tuple(
        (definition.value, ", ".join(sre.SRE_LABELS[t] for t in sorted(types)), sre.DEFINITION_SOURCES[definition])
        for definition, types in sre.DEFINITIONS.items()
    )
    return [RefTable("Definitions", ("Definition", "Event types", "Source"), rows)]


def _locomo_table() -> list[RefTable]:
    rows = tuple((cond.value, locomo.TYPE_LABELS[t]) for cond, t in locomo.CONDITION_TYPE.items())
    return [RefTable("Conditions and types (several types at once are possible)", ("Condition", "Type"), rows)]


REGISTRY: tuple[Instrument, ...] = (
    Instrument(
        "sins",
        "SINS",
        "score",
        "Fisher CG et al. Spine 2010;35:E1221",
        sins.TABLE_VERSION,
        "§2",
        "Spinal instability per lesion, 0–18.",
        sins.TABLE,
        _sins_levels,
        "sins",
    ),
    Instrument(
        "bilsky",
        "Bilsky ESCC scale",
        "grade",
        bilsky.CITATION,
        bilsky.TABLE_VERSION,
        "§3",
        "Epidural spinal cord compression grade per lesion.",
        None,
        _bilsky_table,
        "bilsky",
    ),
    Instrument(
        "tomita",
        "Tomita score",
        "score",
        "Tomita K et al. Spine 2001;26:298",
        tomita.TABLE_VERSION,
        "§4",
        "Surgical strategy from growth, visceral and bone metastases, 2–10.",
        tomita.TABLE,
        _tomita_growth,
        "tomita",
    ),
    Instrument(
        "revised_tokuhashi",
        "Revised Tokuhashi score",
        "score",
        "Tokuhashi Y et al. Spine 2005;30:2186",
        tokuhashi.TABLE_VERSION,
        "§5",
        "Prognosis, 0–15 (higher is better).",
        tokuhashi.TABLE,
        _tokuhashi_sites,
        "revised_tokuhashi",
    ),
    Instrument(
        "bauer",
        "Bauer score",
        "score",
        "Bauer HC, Wedin R. Acta Orthop Scand 1995;66:143",
        bauer.TABLE_VERSION,
        "§6",
        "Five favourable factors, 0–5.",
        bauer.TABLE,
        result_key="bauer",
    ),
    Instrument(
        "modified_bauer",
        "Modified Bauer score",
        "score",
        "Leithner A et al. Eur Spine J 2008;17:1488",
        bauer.MODIFIED_TABLE_VERSION,
        "§6",
        "Bauer without the fracture item, 0–4.",
        bauer.MODIFIED_TABLE,
        result_key="modified_bauer",
    ),
    Instrument(
        "nesms",
        "New England Spinal Metastasis Score",
        "score",
        "Ghori AK et al. Spine J 2015;15:2345",
        nesms.TABLE_VERSION,
        "§7",
        "Modified Bauer, ambulation and albumin, capped at 3.",
        nesms.TABLE,
        result_key="nesms",
    ),
    Instrument(
        "new_katagiri",
        "New Katagiri score",
        "score",
        "Katagiri H et al. Cancer Med 2014;3:1359",
        katagiri.TABLE_VERSION,
        "§8",
        "Prognosis of skeletal metastases, 0–10 (higher is worse).",
        katagiri.TABLE,
        _katagiri_tables,
        "new_katagiri",
    ),
    Instrument(
        "noms",
        "NOMS framework",
        "decision",
        "; ".join(noms.CITATIONS),
        noms.TABLE_VERSION,
        "§9",
        "Neurologic, Oncologic, Mechanical, Systemic: a recommendation per lesion.",
        None,
        _noms_tables,
        "noms",
    ),
    Instrument(
        "lmnop",
        "LMNOP",
        "framework",
        lmnop.CITATION,
        lmnop.TABLE_VERSION,
        "§10",
        "Principles-based summary; not a points score.",
        None,
        _lmnop_table,
        "lmnop",
    ),
    Instrument(
        "wbb",
        "WBB staging and en-bloc options",
        "framework",
        wbb.CITATION,
        wbb.TABLE_VERSION,
        "§11",
        "Which published zone patterns the tumour fits (screen).",
        None,
        _wbb_table,
        "wbb",
    ),
    Instrument(
        "tes_screen",
        "TES indication screen",
        "framework",
        tes.CITATION,
        tes.TABLE_VERSION,
        "§11.3",
        "The review's criteria for total en-bloc spondylectomy (screen).",
        None,
        _tes_table,
        "tes_screen",
    ),
    Instrument(
        "surgery_contraindication_screen",
        "Surgery-contraindication screen",
        "framework",
        surgery_screen.CITATION,
        surgery_screen.TABLE_VERSION,
        "§11",
        "The review's contraindications to surgery, read from the record (information).",
        None,
        _surgery_screen_table,
        "surgery_contraindication_screen",
    ),
    Instrument(
        "performance_status",
        "ECOG, KPS and Frankel",
        "definition",
        "Oken 1982; Frankel 1969",
        performance_status.TABLE_VERSION,
        "§1",
        "Performance status and neurology scales.",
        None,
        _ps_tables,
        "performance_status",
    ),
    Instrument(
        "sre",
        "Skeletal-related events",
        "definition",
        "Stopeck 2010; Saad 2002; Parker 2013",
        sre.TABLE_VERSION,
        "§12",
        "Core and extended SRE definitions.",
        None,
        _sre_table,
    ),
    Instrument(
        "cancer_locomo",
        "Cancer Locomo types",
        "definition",
        "Kawano 2022 (JOA); the review",
        locomo.TABLE_VERSION,
        "§13",
        "Types 1–3 from recorded conditions.",
        None,
        _locomo_table,
    ),
)

SCORES: tuple[Instrument, ...] = tuple(i for i in REGISTRY if i.kind == "score")


def get_instrument(instrument_id: str) -> Instrument:
    for instrument in REGISTRY:
        if instrument.id == instrument_id:
            return instrument
    raise KeyError(instrument_id)


def master_histology_table() -> RefTable:
    """Clinical-reference §15, derived from the instrument modules' own tables."""
    columns = (
        "Histology",
        "Code",
        "Tomita",
        "Tokuhashi primary",
        "Katagiri group",
        "Bauer favourable",
        "Bauer lung",
        "NOMS",
    )
    tomita_tables = {r[1]: r[2] for r in _tomita_growth()[0].rows}
    toku = {r[1]: r[2] for r in _tokuhashi_sites()[0].rows}
    kata = {r[1]: r[2] for r in _katagiri_tables()[1].rows}
    radio = {r[1]: r[2] for r in _noms_tables()[1].rows}
    rows = []
    for site in PrimarySite:
        lung = "undetermined" if site == PrimarySite.UNKNOWN_PRIMARY else ("yes" if site in bauer.LUNG_SITES else "no")
        rows.append(
            (
                PRIMARY_SITE_LABELS[site],
                site.value,
                tomita_tables[site.value],
                toku[site.value],
                kata[site.value],
                "yes" if site in bauer.FAVOURABLE_SITES else "no",
                lung,
                radio[site.value],
            )
        )
    return RefTable("Master histology table (derived from each instrument's table)", columns, tuple(rows))
