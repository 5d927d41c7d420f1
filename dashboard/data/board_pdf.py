"""The cancer-board case card as a PDF (fpdf2), in English or Japanese; no Streamlit API.

The same rows as the HTML card (``dashboard.data.board``): demographics, why
the patient is on the board (the board's question) and since when, every score
with its possible totals, band, explanation and source (the instrument's
citation and table version from ``surveillance.scoring.registry``), NOMS,
lesions, imaging, BMA, Cancer Locomo, the TES and contraindication screens,
the active alerts and earlier decisions.

Font: Noto Sans JP (SIL Open Font License), shipped on PyPI by
``justmytype-intl-cjk``; it covers Latin and Japanese, so one font serves both
languages.  fpdf2 embeds only the glyphs used (a card is ~100 kB).
"""

from __future__ import annotations

import importlib.resources
from datetime import datetime
from functools import cache
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from dashboard.data.board import (
    active_conditions,
    alert_rows,
    bma_summary,
    demographics,
    imaging_rows,
    label_or,
    lesion_rows,
    locomo_types,
    noms_rows,
    score_rows,
    surgery_screen,
)
from dashboard.i18n import Translator
from surveillance.scoring.registry import REGISTRY

FONT = "NotoSansJP"
_RESULT_KEYS = {"revised_tokuhashi": "tokuhashi", "new_katagiri": "katagiri"}


@cache
def font_path() -> str:
    """The bundled Noto Sans JP (variable) font file."""
    path = importlib.resources.files("justmytype_intl_cjk") / "fonts/ofl/notosansjp/NotoSansJP[wght].ttf"
    if not path.is_file():  # pragma: no cover - a broken install
        raise RuntimeError("justmytype-intl-cjk is installed without Noto Sans JP: reinstall requirements.txt")
    return str(path)


@cache
def sources() -> dict[str, str]:
    """Instrument id / result key -> "citation (table version)"."""
    out = {}
    for instrument in REGISTRY:
        text = f"{instrument.citation} ({instrument.table_version})"
        out[instrument.id] = text
        if instrument.result_key:
            out[instrument.result_key] = text
    return out


def _source_of(system_label: str) -> str:
    """The source of a score row: rows are labelled "SINS T12" or by :data:`dashboard.data.board.SYSTEM_NAMES`."""
    from dashboard.data.board import SYSTEM_NAMES

    known = sources()
    if system_label.startswith("SINS"):
        return known.get("sins", "")
    for key, name in SYSTEM_NAMES.items():
        if name == system_label:
            return known.get(key) or known.get(_RESULT_KEYS.get(key, key), "")
    return ""


class _Card(FPDF):
    def __init__(self, footer_text: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self._footer_text = footer_text
        self.set_auto_page_break(auto=True, margin=14)
        self.set_margins(12, 12, 12)
        # One variable font file, two instances: regular (wght 400) and bold (wght 700) for headings
        self.add_font(FONT, "", font_path(), variations={"wght": 400})
        self.add_font(FONT, "B", font_path(), variations={"wght": 700})
        self.set_font(FONT, size=9)

    def footer(self) -> None:
        self.set_y(-10)
        self.set_font(FONT, size=7)
        self.cell(0, 5, f"{self._footer_text} · {self.page_no()}/{{nb}}", align="C")

    def heading(self, text: str) -> None:
        self.ln(2)
        self.set_font(FONT, "B", size=11.5)
        self.cell(0, 7, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_draw_color(150, 150, 150)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())
        self.ln(1)
        self.set_font(FONT, size=9)

    def para(self, text: str, size: float = 9) -> None:
        self.set_font(FONT, size=size)
        self.multi_cell(0, 4.6, text or "—", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_font(FONT, size=9)

    def grid(self, headers: list[str] | None, rows: list[list[Any]], widths: tuple[float, ...] | None = None,
             empty: str = "—") -> None:
        if not rows:
            self.para(empty, 8.5)
            return
        self.set_font(FONT, size=7.5)
        with self.table(col_widths=widths, first_row_as_headings=headers is not None, line_height=3.9,
                        text_align="LEFT", padding=0.8) as table:
            for row in ([headers] if headers else []) + rows:
                cells = table.row()
                for value in row:
                    cells.cell("" if value is None else str(value))
        self.set_font(FONT, size=9)
        self.ln(1)


def case_card_pdf(card: dict[str, Any], tr: Translator, *, printed_at: datetime, printed_by: str) -> bytes:
    """The case card as PDF bytes (A4, every value as text: nothing in it is interpreted)."""
    t = tr.t
    patient, result = card["patient"], card.get("result") or {}
    name = f"{patient['family_name']} {patient['given_name']}"
    pdf = _Card(f"{t('board.card_title')} · {patient['mrn']}")
    pdf.set_title(f"{t('board.card_title')} {patient['mrn']}")
    pdf.set_creator("Cancer Locomo surveillance")
    pdf.alias_nb_pages()
    pdf.add_page()
    pdf.set_font(FONT, "B", size=15)
    pdf.multi_cell(0, 7.5, f"{t('board.card_title')}: {name} · {patient['mrn']}", new_x=XPos.LMARGIN,
                   new_y=YPos.NEXT)
    pdf.para(t("board.printed", when=tr.datetime(printed_at), who=printed_by), 8)

    pdf.heading(t("board.demographics"))
    pdf.grid(None, [[k, v] for k, v in demographics(card, tr, printed_at.date())], (45, 141))

    pdf.heading(t("board.why"))
    pdf.para(f"{card.get('reasons') or '—'} ({t('board.since', when=tr.date(card.get('since')))})")

    pdf.heading(t("board.scores"))
    if card.get("score_error"):
        pdf.para(t("board.score_error", error=card["score_error"]))
    pdf.grid([t("board.col_system"), t("board.col_totals"), t("board.col_band"), t("board.col_explanation"),
              t("board.col_source")],
             [[r["system"], r["totals"], r["band"], r["explanation"], _source_of(r["system"])]
              for r in score_rows(result, tr)], (24, 20, 26, 70, 46), t("app.no_rows"))

    pdf.heading(t("board.noms"))
    pdf.grid([t("board.col_level"), t("board.col_recommendation"), t("board.col_candidates"), t("board.col_flags")],
             [[r["level"], r["recommendation"], r["candidates"], r["flags"]] for r in noms_rows(result)],
             (18, 60, 48, 60), t("app.no_rows"))

    pdf.heading(t("board.lesions"))
    keys = ["level", "pain", "lesion_type", "alignment", "collapse", "posterolateral", "bilsky", "sins", "category",
            "first_seen", "assessed"]
    pdf.grid([t(f"board.col_{k}") for k in keys], [[r[k] for k in keys] for r in lesion_rows(card, tr)], None,
             t("board.no_lesions"))

    pdf.heading(t("board.imaging"))
    pdf.grid([t("board.col_date"), t("board.col_modality"), t("board.col_region"), t("board.col_findings")],
             [[r["date"], r["modality"], r["region"], r["findings"]] for r in imaging_rows(card, tr)],
             (24, 28, 28, 106), t("board.no_imaging"))

    pdf.heading(t("board.bma"))
    pdf.grid(None, [[t(f"board.bma_{k}"), v] for k, v in bma_summary(card, tr).items()], (60, 126))

    pdf.heading(t("board.locomo"))
    pdf.para(", ".join(t(f"board.locomo_type{k}") for k in locomo_types(card)) or t("board.locomo_none"))
    conditions = active_conditions(card, tr)
    if conditions:
        pdf.grid([t("board.col_condition"), t("board.col_onset"), t("board.col_plan"), t("board.col_review")],
                 [[r["condition"], r["onset"], r["plan"], r["review"]] for r in conditions], (60, 26, 74, 26))

    tes = result.get("tes_screen") or {}
    pdf.heading(t("board.tes"))
    verdict = label_or(tr, f"board.tes_{tes['result']}", tes["result"]) if tes else "—"
    pdf.para(t("board.tes_result", result=verdict))
    pdf.grid([t("board.col_criterion"), t("board.col_status")],
             [[label_or(tr, f"board.tes_c_{k}", k), label_or(tr, f"board.status_{v}", v)]
              for k, v in (tes.get("criteria") or {}).items()], (120, 66), t("app.no_rows"))

    pdf.heading(t("board.contra"))
    pdf.para(t("board.contra_note"), 8)
    pdf.grid([t("board.col_item"), t("board.col_record"), t("board.col_concern")],
             [[t(f"board.contra_{i['item']}"), t(f"board.contra_{i['item']}_values", **i["values"]),
               t(f"board.concern_{i['status']}")] for i in surgery_screen(card, joiner=t("board.or"))],
             (60, 86, 40), t("app.no_rows"))

    pdf.heading(t("board.alerts"))
    alert_keys = ["title", "severity", "status", "opened", "rule", "evidence"]
    pdf.grid([t(f"board.col_{'alert' if k == 'title' else k}") for k in alert_keys],
             [[r[k] for k in alert_keys] for r in alert_rows(card, tr)], (40, 18, 20, 28, 28, 52), t("board.no_alerts"))

    if card.get("history"):
        pdf.heading(t("board.history"))
        pdf.grid([t("board.col_date"), t("board.col_decision"), t("board.col_by")],
                 [[tr.date(h["decided_on"]), h["decision"], h["decided_by"]] for h in card["history"]], (26, 130, 30))
    pdf.para(t("board.engine", version=result.get("engine_version", "—")), 8)
    return bytes(pdf.output())
