"""The registry is what the calculator, the reference page and the CLI read."""

import pytest

from surveillance.scoring import REGISTRY, SCORES, master_histology_table, score_case
from surveillance.scoring.vocab import PrimarySite


def test_every_instrument_has_provenance_and_tables():
    ids = [i.id for i in REGISTRY]
    assert len(ids) == len(set(ids))
    for instrument in REGISTRY:
        assert instrument.citation and instrument.table_version and instrument.reference_section.startswith("§")
        tables = instrument.reference_tables()
        assert tables, instrument.id
        for table in tables:
            assert table.rows and all(len(row) == len(table.columns) for row in table.rows), (
                instrument.id,
                table.title,
            )


# Published ranges, transcribed from clinical-reference.md (§2.1, §4.1, §5.1, §6.1, §7.1, §8.1).
PUBLISHED_RANGES = {
    "sins": (0, 18),
    "tomita": (2, 10),
    "revised_tokuhashi": (0, 15),
    "bauer": (0, 5),
    "modified_bauer": (0, 4),
    "nesms": (0, 3),
    "new_katagiri": (0, 10),
}


@pytest.mark.parametrize("instrument", SCORES, ids=lambda i: i.id)
def test_declared_range_matches_the_published_range(instrument):
    table = instrument.table
    assert (table.minimum, table.maximum) == PUBLISHED_RANGES[instrument.id]
    # The bands tile the range with no gap and no overlap.
    covered = [t for band in table.bands for t in range(band.low, band.high + 1)]
    assert covered == list(range(table.minimum, table.maximum + 1))


@pytest.mark.parametrize("instrument", [i for i in SCORES if i.id != "nesms"], ids=lambda i: i.id)
def test_item_points_reach_exactly_the_declared_range(instrument):
    # The sum of each item's minimum and maximum must equal the published range:
    # this is how the 3-point "rapid growth" misprint of Tomita would show up.
    table = instrument.table
    low = sum(min(o.points for o in item.options) for item in table.items)
    high = sum(max(o.points for o in item.options) for item in table.items)
    assert (low, high) == (table.minimum, table.maximum)


def test_master_histology_table_covers_every_code():
    table = master_histology_table()
    assert [row[1] for row in table.rows] == [site.value for site in PrimarySite]


def test_every_score_in_the_registry_appears_in_a_result():
    result = score_case({"primary_site": "breast", "spinal_lesions": [{"level": "T8"}]})
    for instrument in REGISTRY:
        if instrument.result_key and instrument.result_key != "wbb":
            assert instrument.result_key in result, instrument.id
