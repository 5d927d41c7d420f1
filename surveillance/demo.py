"""Demo data: a realistic, entirely fictional cohort for demonstrations and benchmarks.

:func:`generate_demo` fills an already-migrated, **empty** database with demo
accounts (:data:`DEMO_USERS`, shown on the login page in demo mode) and
``patients`` fictional cancer patients with about 28 fact rows each (the
patient row included), the volume of ``shared/notes/perf.md`` "Synthetic
data", and writes ``patient_state`` for every patient, computed with numpy from
the generated facts — the exact values :func:`surveillance.state.refresh_patient_state`
would write, without reading anything back (``tests/test_demo.py`` proves the
equality column by column on both backends).

Everything is vectorised numpy with a seeded generator per block of
:data:`CHUNK` patients, so the same ``seed``, ``patients`` and ``today`` give
the same rows on SQLite and PostgreSQL, inline or with the producer thread.
Nothing is dated after ``today`` or before the patient's birth; facts of a
deceased, transferred or on-hold patient stop at the status date.

How it is written (the point is speed: a million patients, 29 M rows, in under
three minutes on two cores; ``shared/notes/perf.md`` for the anchors):

* One transaction, blocks written as they are made, so memory stays flat and
  a failure leaves the database empty.  From four blocks on, a producer
  thread makes the next block (numpy, mostly without the GIL) while the
  writer binds the current one.
* Raw driver, never the ORM or Core (:mod:`db.bulk`'s rule): multi-row
  ``INSERT … VALUES`` on SQLite, ``COPY`` on PostgreSQL.  On SQLite, values
  are shaped for the ``sqlite3`` module's fast path (see :class:`_Objects`),
  the integer primary key is left to SQLite (checked afterwards), and
  constant columns are literals.
* Secondary indexes of the filled tables are dropped and recreated from their
  stored definitions before the commit (PostgreSQL: foreign keys too; re-adding
  one validates it in a single pass), so the schema stays exactly the Alembic
  head.  SQLite relaxes durability on the load's own connection only
  (:func:`_sqlite_load_settings`, restored afterwards).

Distributions (per patient unless stated; "[design]" marks a choice made for a
plausible demo, not a published figure):

* **Primary site** — breast 22%, lung 20% (NSCLC 85% / SCLC 15%), prostate 16%,
  kidney 7%, myeloma 5%, liver 3%, colon 3%, rectum 2%, thyroid 2.5%, stomach
  2%, other sites ≤ 1.5% each, unknown primary 3%, and 2% with only a free-text
  histology ("肺腺癌", "renal cell carcinoma", …) and no code.  Shares as in
  perf.md "Synthetic data" (breast 22%, lung 20%, prostate 16%), in line with
  the frequency order of spinal-metastasis series cited by the review (the
  seed paper; clinical-reference §15) [design for the tail].  Histology text
  (70% of coded patients) always maps to the patient's code through
  :func:`surveillance.scoring.histology.normalise_histology`.
* **Flags** — hormone dependence for breast (72% yes / 23% no / 5% unknown)
  and prostate (85% / 10% / 5%); molecularly targeted therapy for NSCLC (35% /
  55% / 10%), some kidney and breast; previous chemotherapy and fitness for
  surgery with ~10–15% unknown [design].
* **Status** — active 85%, deceased 10%, transferred 3%, on hold 2% (the brief;
  perf.md: active 85%, deceased 10%), status date after registration;
  registration over the five years before ``today`` with density rising 2:1
  (a growing service) [design]; ages 30–90 (normal, mean 68, SD 11).
* **Spinal lesions** — 0–4 (none 25%, 1 14%, 2 19%, 3 21%, 4 21%; mean ≈ 2.0 as
  perf.md); levels thoracic ≈ 55%, lumbar ≈ 28%, cervical ≈ 10%, sacral ≈ 7%
  (the usual thoracic > lumbar > cervical order of spinal metastases); 10% span
  2–3 contiguous levels; 3% inactive.  SINS components (Fisher 2010): pain
  mechanical 25% / non-mechanical 35% / none 20% / **unknown 20%**
  (clinical-reference §2.3: pain is the item most often missing); bone lesion
  by histology (prostate mostly blastic, kidney/thyroid/liver/myeloma lytic);
  alignment normal 80%; collapse none 45% / > 50% involved 25% / < 50% 18% /
  > 50% 7%; posterolateral none 55% / unilateral 30% / bilateral 10%; Bilsky 0
  60% / 1a 17% / 1b 8% / 1c 5% / 2 2.5% / 3 1% / unknown 5.5% [design].
  Each lesion is first seen on one of the patient's imaging studies and
  assessed on it and on 0–3 later studies (``lesion_assessment``); earlier
  assessments are sometimes one step milder; the lesion's current columns are
  those of its latest assessment.
* **Imaging** — studies every 60, 90 or 180 days (perf.md) by the worst
  lesion (SINS ≥ 10 or Bilsky ≥ 1b / SINS 7–9 / lower; no lesion: 180),
  1 + Poisson(2.8) per patient; MRI 45%, CT 30%, bone scan 12%, PET-CT 8%,
  X-ray 5% (X-ray and non-spine regions do not count for the clock); the last
  study is within one interval for 80% of active patients and one to 2.5
  intervals back for the rest, so about a third of active patients are
  overdue against the 6-week / 3-month / 6-month tiers [design].
* **ECOG** — 1 + Poisson(3) records, a drifting random walk (steps −1 10% / 0
  64% / +1 22% / +2 4%; perf.md), KPS alongside in 22% and alone in 6%.
* **Neurology** — Poisson(1.3) records: Frankel E 88% … A 1%, worsening in 8%
  of later records, ambulation from the grade; new deficit 2% (30% when the
  grade worsened), cord-compression pain 2%, new spinal pain 6% [design].
* **Laboratory** — Poisson(1.12) panels of up to 7 tests in the canonical units
  of :mod:`surveillance.labs`, spread around the New Katagiri cut-offs
  (albumin < 3.7 g/dL, CRP ≥ 0.4 mg/dL, LDH ≥ 250 U/L, platelets < 100,000/µL,
  calcium ≥ 10.3 mg/dL, bilirubin ≥ 1.4 mg/dL; Katagiri 2014) through a
  per-patient illness factor [design].
* **Metastatic status** — 1 (70%) or 2 (30%) records: visceral none 50% /
  nodular 33% / disseminated 17%, brain 7%, extraspinal bone foci (none 35%),
  an explicit vertebral count in 10% [design].
* **Bone-modifying agents** — 80% of patients with bone metastases start one,
  so ~20% never do (perf.md; ESMO 2020 / ASCO 2017 indicate one): denosumab
  120 mg q4w (55%) or zoledronic acid 4 mg (dose-reduced for renal function in
  15%) with the patient's regimen q4w (55%) or q12w (45%; CALGB 70604); 22%
  stopped, 40% of stopped denosumab with a transition plan; 20% of ongoing
  courses are overdue; 3% on osteoporosis-dose denosumab 60 mg
  (``sre_prevention`` false).  Dental examination before the first dose in
  72% (MASCC/ISOO/ASCO 2019), follow-up in 35%.
* **Treatments** — spinal radiotherapy in 33% of patients with lesions (cEBRT
  8 Gy/1, 20 Gy/5, 30 Gy/10; SBRT 24 Gy/2, 27 Gy/3, 30 Gy/5; SRS 18–24 Gy/1),
  surgery in 7% (separation 35% with a margin in mm, about a third below 3 mm
  (the review, Gong et al.), decompression and fixation, MISt, BKP, PVP), and
  0–3 systemic lines by site; the last line ongoing for 65% of active patients.
* **Skeletal events** — about 0.3 per patient: 18% of patients with spinal
  lesions have at least one (12% in Nakanishi 2024, ~20% in the review's refs
  23–24; clinical-reference §12), 1 + Poisson(0.9) each, types from
  :class:`~surveillance.scoring.sre.SreType`, ~30% emergency presentations,
  dated across follow-up so the monthly trend grows with the cohort.
* **Cancer Locomo** — Poisson(0.5) conditions of all three types (§13), type 2
  with a management plan in 55%, type 3 with an orthopaedic review in the last
  year in 50%; cancer-board cases for 7% of patients with lesions, 80% decided.

Names are fictional combinations of common Japanese (kanji, 65%) and English
given and family names; MRNs are ``D0000001`` onwards.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from db import bulk
from db.engine import is_sqlite, writer
from surveillance.auth import hash_password
from surveillance.labs import LABS, LabTest
from surveillance.locomo import CONDITION_TYPE, LocomoCondition
from surveillance.scoring.sre import SreType
from surveillance.scoring.vocab import Level
from surveillance.state import STATE_COLUMNS

#: Patients per generated block: the unit of the random stream (so a seed gives
#: the same cohort whatever the backend) and of memory.
CHUNK = 50_000
#: Rows per multi-row ``INSERT`` statement on SQLite.
_ROWS_PER_STATEMENT = 64


class DemoUser(NamedTuple):
    username: str
    display_name: str
    role: str
    department: str | None
    password: str


#: The demo accounts (shown on the login page in demo mode; never use them in production).
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "Demo Administrator", "admin", None, "admin-demo-pass"),
    DemoUser("lead", "Dr Hanako Mori", "lead", "oncology", "lead-demo-pass"),
    DemoUser("physician1", "Dr Kenji Tanaka", "physician", "oncology", "physician-demo-pass"),
    DemoUser("physician2", "Dr Emily Carter", "physician", "orthopaedics", "physician-demo-pass"),
    DemoUser("nurse1", "Yui Sato", "nurse", "oncology", "nurse-demo-pass"),
    DemoUser("nurse2", "Sarah Johnson", "nurse", "oncology", "nurse-demo-pass"),
    DemoUser("nurse3", "Aoi Suzuki", "nurse", "oncology", "nurse-demo-pass"),
    DemoUser("nurse4", "Megumi Takahashi", "nurse", "orthopaedics", "nurse-demo-pass"),
    DemoUser("nurse5", "Laura Bennett", "nurse", "orthopaedics", "nurse-demo-pass"),
    DemoUser("nurse6", "Naomi Watanabe", "nurse", "radiation_oncology", "nurse-demo-pass"),
)
DEPARTMENTS = ("oncology", "orthopaedics", "radiation_oncology")

FACT_TABLES = (
    "patient", "imaging_study", "spinal_lesion", "lesion_assessment", "performance_status", "neuro_status",
    "lab_result", "metastatic_status", "bma_administration", "dental_exam", "treatment", "skeletal_event",
    "locomo_condition", "board_case",
)
#: Tables the generator fills (and whose secondary indexes it rebuilds), parents first.
FILLED_TABLES = (*FACT_TABLES, "patient_state")


@dataclass
class DemoSummary:
    patients: int
    users: int
    rows: dict[str, int]  # rows written per table (fact tables, patient_state, app_user)
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def fact_rows(self) -> int:
        return sum(self.rows.get(t, 0) for t in FACT_TABLES)

    @property
    def facts_per_patient(self) -> float:
        """Fact rows per patient, the patient row included (perf.md counts it the same way)."""
        return self.fact_rows / self.patients if self.patients else 0.0


# ---------------------------------------------------------------------------
# Vocabularies (lookup tables: codes are indices)
# ---------------------------------------------------------------------------


def _lut(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


class _Vocab:
    """A lookup table (code -> value), with its SQLite form (``None`` as ``''``, see :class:`_Objects`)."""

    def __init__(self, name: str, values: Sequence[Any]):
        self.name = name
        self.values = _lut(values)
        self.for_sqlite = _lut(["" if v is None else v for v in values])
        self.has_null = any(v is None for v in values)
        self.null_codes = np.array([i for i, v in enumerate(values) if v is None], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.values)


NULL_DAY = -(2**40)  # "no date" in the int64 day columns
TRI = _lut([None, False, True])  # code + 1

LEVELS = [lv.value for lv in Level]  # cranio-caudal: the index is vocab.LEVEL_ORDER
LEVEL_LUT = _Vocab("LEVEL_LUT", [*LEVELS, None])
NO_LEVEL = len(LEVELS)
# Relative frequency of each level C1..S5 (thoracic > lumbar > cervical > sacral).
_LEVEL_WEIGHTS = np.array(
    [0.0]  # occiput: not a vertebra
    + [1.4, 1.8, 1.3, 1.3, 1.4, 1.4, 1.4]  # C1-C7  ~10%
    + [3.4, 3.6, 4.0, 4.4, 4.6, 5.0, 5.2, 5.2, 5.0, 4.8, 4.6, 4.2]  # T1-T12 ~55%
    + [6.0, 6.0, 5.6, 5.2, 5.2]  # L1-L5 ~28%
    + [3.6, 1.2, 0.8, 0.6, 0.6]  # S1-S5 ~7%
)
_LEVEL_WEIGHTS = _LEVEL_WEIGHTS / _LEVEL_WEIGHTS.sum()

# (code, share, histology texts that normalise to the code)
_SITES: tuple[tuple[str | None, float, tuple[str, ...]], ...] = (
    ("breast", 0.22, ("invasive ductal carcinoma of the breast", "breast cancer", "乳癌", "invasive lobular carcinoma of the breast")),
    ("lung_nsclc", 0.17, ("lung adenocarcinoma", "squamous cell carcinoma of the lung", "肺腺癌", "non-small cell lung cancer")),
    ("lung_sclc", 0.03, ("small cell lung cancer", "小細胞肺癌")),
    ("prostate", 0.16, ("prostate adenocarcinoma", "前立腺癌")),
    ("kidney", 0.07, ("clear cell renal cell carcinoma", "renal cell carcinoma", "腎細胞癌")),
    ("myeloma", 0.05, ("multiple myeloma", "多発性骨髄腫")),
    ("liver", 0.03, ("hepatocellular carcinoma", "肝細胞癌")),
    ("colon", 0.03, ("colon adenocarcinoma", "結腸癌")),
    ("rectum", 0.02, ("rectal adenocarcinoma", "直腸癌")),
    ("thyroid", 0.025, ("papillary thyroid carcinoma", "follicular thyroid carcinoma", "甲状腺乳頭癌")),
    ("stomach", 0.02, ("gastric adenocarcinoma", "胃癌")),
    ("esophagus", 0.015, ("oesophageal squamous cell carcinoma", "食道癌")),
    ("pancreas", 0.015, ("pancreatic ductal adenocarcinoma", "膵癌")),
    ("bladder", 0.015, ("urothelial carcinoma of the bladder", "膀胱癌")),
    ("head_neck", 0.015, ("head and neck squamous cell carcinoma", "頭頸部癌")),
    ("uterus", 0.01, ("endometrial carcinoma", "子宮体癌")),
    ("cervix", 0.01, ("squamous cell carcinoma of the cervix", "子宮頸癌")),
    ("lymphoma", 0.01, ("diffuse large B-cell lymphoma", "悪性リンパ腫")),
    ("ovary", 0.005, ("high-grade serous ovarian carcinoma", "卵巣癌")),
    ("gallbladder", 0.005, ("gallbladder cancer", "胆嚢癌")),
    ("melanoma", 0.005, ("melanoma", "悪性黒色腫")),
    ("soft_tissue_sarcoma", 0.005, ("leiomyosarcoma", "軟部肉腫")),
    ("neuroendocrine", 0.005, ("neuroendocrine tumour", "神経内分泌腫瘍")),
    ("unknown_primary", 0.03, ("cancer of unknown primary", "原発不明癌")),
    ("other", 0.01, ()),
    (None, 0.02, ("肺腺癌", "renal cell carcinoma", "乳癌", "前立腺癌", "hepatocellular carcinoma", "甲状腺乳頭癌",
                  "大腸癌", "多発性骨髄腫", "lung adenocarcinoma", "prostate cancer")),
)
SITE_LUT = _Vocab("SITE_LUT", [s[0] for s in _SITES])
_SITE_INDEX = {s[0]: i for i, s in enumerate(_SITES)}
_SITE_SHARE = np.array([s[1] for s in _SITES])
_HISTOLOGY_TEXTS = sorted({t for s in _SITES for t in s[2]})
HISTOLOGY_LUT = _Vocab("HISTOLOGY_LUT", [*_HISTOLOGY_TEXTS, None])
_HISTOLOGY_CODE = {t: i for i, t in enumerate(_HISTOLOGY_TEXTS)}
# per site: the histology codes it may carry (padded by repetition to 4 columns)
_SITE_HISTOLOGY = np.array(
    [[_HISTOLOGY_CODE[s[2][i % len(s[2])]] if s[2] else len(_HISTOLOGY_TEXTS) for i in range(4)] for s in _SITES]
)
_FEMALE_ONLY = {"breast", "uterus", "cervix", "ovary"}
_MALE_ONLY = {"prostate"}
_FEMALE_SHARE = {"lung_nsclc": 0.35, "lung_sclc": 0.2, "kidney": 0.3, "liver": 0.25, "bladder": 0.25,
                 "esophagus": 0.2, "stomach": 0.3, "head_neck": 0.25, "thyroid": 0.7}
_P_FEMALE = np.array([1.0 if s[0] in _FEMALE_ONLY else 0.0 if s[0] in _MALE_ONLY else _FEMALE_SHARE.get(s[0], 0.45)
                      for s in _SITES])
SEX_LUT = _Vocab("SEX_LUT", ["male", "female"])

_JA_FAMILY = ("佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤", "吉田", "山田", "佐々木",
              "山口", "松本", "井上", "木村", "林", "斎藤", "清水", "山崎", "森", "池田", "橋本", "阿部", "石川",
              "山下", "中島", "石井", "小川", "前田", "岡田", "長谷川", "藤田", "後藤", "近藤", "村上", "遠藤")
_JA_GIVEN_F = ("花子", "陽子", "恵子", "幸子", "和子", "久美子", "由美", "真由美", "明美", "直美", "智子", "裕子",
               "美穂", "香織", "愛", "結衣", "さくら", "千代", "節子", "京子", "典子", "洋子")
_JA_GIVEN_M = ("太郎", "一郎", "健二", "浩", "誠", "隆", "茂", "清", "博", "修", "明", "実", "豊", "勝",
               "和夫", "正雄", "健一", "大輔", "翔太", "拓也", "直樹", "秀樹")
_EN_FAMILY = ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
              "Thomas", "Moore", "Martin", "Jackson", "Thompson", "White", "Harris", "Clark", "Lewis", "Walker",
              "Hall", "Allen", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Nelson", "Hill",
              "Campbell", "Mitchell", "Roberts", "Carter", "Phillips", "Evans", "Turner")
_EN_GIVEN_F = ("Mary", "Patricia", "Linda", "Barbara", "Elizabeth", "Susan", "Margaret", "Dorothy", "Karen", "Nancy",
               "Helen", "Sandra", "Donna", "Carol", "Ruth", "Sharon", "Michelle", "Laura", "Emily", "Anne")
_EN_GIVEN_M = ("James", "John", "Robert", "Michael", "William", "David", "Richard", "Joseph", "Charles", "Thomas",
               "Daniel", "Paul", "Mark", "George", "Kenneth", "Steven", "Edward", "Brian", "Ronald", "Peter")
FAMILY_LUT = _Vocab("FAMILY_LUT", [*_JA_FAMILY, *_EN_FAMILY])
GIVEN_LUT = _Vocab("GIVEN_LUT", [*_JA_GIVEN_F, *_JA_GIVEN_M, *_EN_GIVEN_F, *_EN_GIVEN_M])

STATUS_LUT = _Vocab("STATUS_LUT", ["active", "deceased", "transferred", "on_hold"])
DEPT_LUT = _Vocab("DEPT_LUT", [*DEPARTMENTS, None])

PAIN_LUT = _Vocab("PAIN_LUT", ["none", "non_mechanical", "mechanical", None])  # ordinal, mildest first
TYPE_LUT = _Vocab("TYPE_LUT", ["lytic", "mixed", "blastic", None])
ALIGN_LUT = _Vocab("ALIGN_LUT", ["normal", "deformity", "subluxation", None])
COLLAPSE_LUT = _Vocab("COLLAPSE_LUT", ["none", "none_gt50_involved", "lt50", "gt50", None])
POSTERO_LUT = _Vocab("POSTERO_LUT", ["none", "unilateral", "bilateral", None])
BILSKY_LUT = _Vocab("BILSKY_LUT", ["0", "1a", "1b", "1c", "2", "3", None])
WBB_ZONES_LUT = _Vocab("WBB_ZONES_LUT", ["4,5,6,7,8", "1,2,3,4,5", "3,4,5,6,7,8,9", "10,11,12,1,2", "5,6,7", None])
WBB_LAYERS_LUT = _Vocab("WBB_LAYERS_LUT", ["B,C", "A,B,C", "B,C,D", "C,D", None])
WBB_NUMBERING_LUT = _Vocab("WBB_NUMBERING_LUT", ["boriani_clockwise", None])
RECORDED_BY_LUT = _Vocab("RECORDED_BY_LUT", ["physician1", "physician2", "import:pacs"])

MODALITY_LUT = _Vocab("MODALITY_LUT", ["mri", "ct", "pet_ct", "bone_scan", "xray"])
_MRI, _CT, _PET, _BONE_SCAN, _XRAY = range(5)
REGION_LUT = _Vocab("REGION_LUT", ["whole_spine", "thoracic", "lumbar", "cervical", "sacral", "other"])
_WHOLE_SPINE, _OTHER_REGION = 0, 5
FINDINGS_LUT = _Vocab("FINDINGS_LUT", [None, "No new spinal lesion.", "Stable spinal metastases.",
                     "Progression of known spinal metastases.", "New vertebral lesion; see lesion assessment.",
                     "Degenerative changes only."])

FRANKEL_LUT = _Vocab("FRANKEL_LUT", ["E", "D", "C", "B", "A", None])  # by severity
AMBULATION_LUT = _Vocab("AMBULATION_LUT", ["independent", "with_aid", "with_assistance", "non_ambulatory", None])

LAB_TESTS = [LabTest.ALBUMIN, LabTest.CRP, LabTest.LDH, LabTest.PLATELETS, LabTest.CALCIUM, LabTest.BILIRUBIN,
             LabTest.CREATININE]
TEST_LUT = _Vocab("TEST_LUT", [t.value for t in LAB_TESTS])
LOINC_LUT = _Vocab("LOINC_LUT", [LABS[t].loinc[0] for t in LAB_TESTS])
UNIT_LUT = _Vocab("UNIT_LUT", [LABS[t].unit for t in LAB_TESTS])
_CREATININE = LAB_TESTS.index(LabTest.CREATININE)

VISCERAL_LUT = _Vocab("VISCERAL_LUT", ["none", "nodular", "disseminated", None])

AGENT_LUT = _Vocab("AGENT_LUT", ["denosumab", "zoledronic_acid", None])
_DENOSUMAB, _ZOLEDRONIC, _NO_AGENT = 0, 1, 2
REGIMEN_LUT = _Vocab("REGIMEN_LUT", ["q4w", "q12w", None])
NOT_INDICATED_LUT = _Vocab("NOT_INDICATED_LUT", [None, "renal impairment (eGFR < 30)", "patient declined", "dental treatment pending",
                          "life expectancy under 3 months"])
TRANSITION_LUT = _Vocab("TRANSITION_LUT", [None, "zoledronic acid 4 mg 6 months after the last denosumab dose",
                       "alendronate 35 mg weekly from the next due date"])
DENTAL_FINDINGS_LUT = _Vocab("DENTAL_FINDINGS_LUT", [None, "No active dental disease.", "Caries treated before BMA.",
                            "Extraction planned; BMA start agreed with oncology.", "Exposed bone, suspected ONJ."])

KIND_LUT = _Vocab("KIND_LUT", ["radiotherapy", "surgery", "systemic"])
_RT, _SURGERY, _SYSTEMIC = range(3)
TREATMENT_LUT = _Vocab("TREATMENT_LUT", ["cebrt", "sbrt", "srs", "separation", "decompression_fixation", "mist", "bkp", "pvp",
                      "chemotherapy", "targeted", "hormone", "immunotherapy"])
_SEPARATION = 3
# radiotherapy schedules: (modality code, dose Gy, fractions, share)
_RT_SCHEDULES = np.array([
    (0, 8.0, 1, 0.21), (0, 20.0, 5, 0.21), (0, 30.0, 10, 0.18),
    (1, 24.0, 2, 0.13), (1, 27.0, 3, 0.10), (1, 30.0, 5, 0.10),
    (2, 18.0, 1, 0.04), (2, 24.0, 1, 0.03),
])
_SURGERY_SHARES = np.array([0.35, 0.25, 0.20, 0.10, 0.10])  # separation, decompression_fixation, mist, bkp, pvp
# SINS points (Fisher 2010) by the codes above, an unknown item at its maximum (as the tiers read possible
# totals): only to give each patient an imaging interval that fits the risk of the worst lesion.
_SINS_LOCATION = np.array([3, 3, 3, 2, 2, 2, 2, 3, 3, 3] + [1] * 8 + [3, 3, 3, 2, 2, 2, 3, 3, 0, 0, 0, 0])
_SINS_PAIN = np.array([0, 1, 3, 3])
_SINS_TYPE = np.array([2, 1, 0, 2])
_SINS_ALIGNMENT = np.array([0, 2, 4, 4])
_SINS_COLLAPSE = np.array([0, 1, 2, 3, 3])
_SINS_POSTEROLATERAL = np.array([0, 1, 3, 3])

SRE_LUT = _Vocab("SRE_LUT", [t.value for t in SreType])
_SRE_INDEX = {t: i for i, t in enumerate(SreType)}

LOCOMO_LUT = _Vocab("LOCOMO_LUT", [c.value for c in LocomoCondition])
_LOCOMO_TYPE = np.array([CONDITION_TYPE[c] for c in LocomoCondition])
PLAN_LUT = _Vocab("PLAN_LUT", [None, "Rehabilitation programme (physiotherapy twice weekly)",
                 "Bone health: vitamin D and calcium; osteoporosis treatment reviewed",
                 "Neuropathy: dose modification and fall-prevention advice",
                 "Compression garment and lymphoedema clinic", "Orthopaedic follow-up arranged"])
BOARD_REASON_LUT = _Vocab("BOARD_REASON_LUT", ["SINS ≥ 7: potentially unstable lesion", "Bilsky grade 2–3 epidural compression",
                         "New skeletal-related event", "ECOG decline: motor cause?", "Unknown primary with bone metastasis",
                         "TES screen positive: solitary metastasis"])
BOARD_DECISION_LUT = _Vocab("BOARD_DECISION_LUT", [None, "SBRT to the index level, MRI in 3 months",
                           "Separation surgery followed by SBRT", "Continue systemic therapy; re-image in 6 weeks",
                           "Palliative cEBRT 8 Gy in 1 fraction", "MISt stabilisation and rehabilitation referral",
                           "Best supportive care; keep walking with physiotherapy"])
BOARD_BY_LUT = _Vocab("BOARD_BY_LUT", ["physician1", "physician2", "lead", None])


# ---------------------------------------------------------------------------
# Vectorised helpers
# ---------------------------------------------------------------------------


def _cat(rng: np.random.Generator, probs: Sequence[float], size: int) -> np.ndarray:
    cum = np.cumsum(np.asarray(probs, dtype=float))
    return np.searchsorted(cum / cum[-1], rng.random(size), side="right").astype(np.int64)


def _cat_rows(rng: np.random.Generator, table: np.ndarray, group: np.ndarray) -> np.ndarray:
    """A categorical draw per row, with the probabilities of row ``group`` of ``table``."""
    cum = np.cumsum(table, axis=1)
    cum = cum / cum[:, -1:]
    u = rng.random(len(group))
    return (u[:, None] >= cum[group]).sum(axis=1).astype(np.int64)


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows for ``counts[i]`` items of each owner: (owner, rank within owner, start of each owner)."""
    counts = counts.astype(np.int64)
    starts = np.cumsum(counts) - counts
    owner = np.repeat(np.arange(len(counts)), counts)
    return owner, np.arange(len(owner)) - starts[owner], starts


def _tri(rng: np.random.Generator, size: int, p_true: float, p_unknown: float) -> np.ndarray:
    u = rng.random(size)
    return np.where(u < p_unknown, -1, np.where(u < p_unknown + p_true, 1, 0)).astype(np.int8)


def _between(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A uniform day in [lo, hi] (hi >= lo)."""
    return lo + np.floor(rng.random(len(lo)) * (hi - lo + 1)).astype(np.int64)


def _last(owner: np.ndarray, n: int, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per owner, the row index of the last (and the one-before-last) row among ``mask``; -1 for none.

    Rows are in (owner, date, id) order, so "last" is the latest by (date, id),
    the order :func:`surveillance.state._latest` uses.
    """
    idx = np.arange(len(owner)) if mask is None else np.flatnonzero(mask)
    last = np.full(n, -1, dtype=np.int64)
    prev = np.full(n, -1, dtype=np.int64)
    if len(idx):
        o = owner[idx]
        end = np.flatnonzero(np.r_[o[1:] != o[:-1], True])
        last[o[end]] = idx[end]
        before = end[end > 0]
        same = o[before - 1] == o[before]
        prev[o[before[same]]] = idx[before[same] - 1]
    return last, prev


def _first(owner: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    idx = np.arange(len(owner)) if mask is None else np.flatnonzero(mask)
    first = np.full(n, -1, dtype=np.int64)
    if len(idx):
        o = owner[idx]
        start = np.flatnonzero(np.r_[True, o[1:] != o[:-1]])
        first[o[start]] = idx[start]
    return first


def _pick(values: np.ndarray, index: np.ndarray, null: Any) -> np.ndarray:
    """``values[index]`` with ``null`` where ``index`` is -1."""
    if len(values) == 0:
        return np.full(len(index), null, dtype=values.dtype if values.dtype != object else object)
    return np.where(index >= 0, values[np.maximum(index, 0)], null)


def _group_max(owner: np.ndarray, values: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    out = np.full(n, NULL_DAY, dtype=np.int64)
    sel = np.ones(len(owner), dtype=bool) if mask is None else mask
    sel = sel & (values != NULL_DAY)
    np.maximum.at(out, owner[sel], values[sel])
    return out


def _group_any(owner: np.ndarray, mask: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(owner[mask], minlength=n) > 0


def _sort(columns: dict[str, np.ndarray], *keys: str) -> dict[str, np.ndarray]:
    """Rows reordered by the keys (first key most significant), stable."""
    order = np.lexsort(tuple(columns[k] for k in reversed(keys)))
    return {k: v[order] for k, v in columns.items()}


# ---------------------------------------------------------------------------
# One block of patients
# ---------------------------------------------------------------------------

# A column to write: (name, kind, data).  Kinds: "i" int, "f" float, "i?"/"f?" float with NaN for NULL,
# "d" int64 day with NULL_DAY for NULL, "b" bool, "t" tri int8 (-1 NULL), "c" codes into a lookup
# table (data = (codes, lut)), "o" object array.
Column = tuple[str, str, Any]


@dataclass
class _Block:
    n: int
    tables: dict[str, tuple[int, list[Column]]]  # table -> (rows, columns)
    state: list[Column]


@dataclass(frozen=True)
class _GeneratorSpec:
    seed: int
    today: date
    nurse_ids: tuple[int, ...]
    nurse_departments: tuple[int, ...]  # index into DEPARTMENTS


class _Generator:
    def __init__(self, spec: _GeneratorSpec):
        self.seed = spec.seed
        self.today = spec.today
        self.today_d = (spec.today - date(1970, 1, 1)).days
        self.nurse_ids = np.array(spec.nurse_ids, dtype=np.int64)
        self.nurse_departments = np.array(spec.nurse_departments, dtype=np.int64)

    def block(self, index: int, first_id: int, n: int) -> _Block:
        """Block ``index``: patients ``first_id .. first_id + n - 1``.

        Other tables' ids are block-local (0, 1, …, kind ``"r"``); the writer adds
        each table's offset, so blocks can be made ahead of the writer, in another thread.
        """
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, index])))
        today = self.today_d
        pid = np.arange(first_id, first_id + n, dtype=np.int64)

        # --- the patient -----------------------------------------------------------------
        u = rng.random(n)
        t = -1.0 + np.sqrt(1.0 + 3.0 * u)  # density rising 1 -> 2 over the five years
        reg = today - 1826 + np.floor(t * 1826).astype(np.int64)
        reg = np.minimum(reg, today)
        age_days = np.clip(rng.normal(68.0, 11.0, n), 30.0, 89.9) * 365.25
        birth = today - np.floor(age_days).astype(np.int64)
        birth = np.clip(birth, today - int(90 * 365.25) + 1, today - int(30 * 365.25) - 1)
        status = _cat(rng, [0.85, 0.10, 0.03, 0.02], n)
        active = status == 0
        span = today - reg
        status_on = np.where(active, reg, reg + np.ceil((0.15 + 0.85 * rng.random(n)) * span).astype(np.int64))
        status_on = np.minimum(status_on, today)
        end = np.where(active, today, status_on)  # facts stop here
        start = reg - 30  # work-up before registration
        site = _cat(rng, _SITE_SHARE, n)
        female = rng.random(n) < _P_FEMALE[site]
        japanese = rng.random(n) < 0.65
        family = np.where(japanese, rng.integers(0, len(_JA_FAMILY), n),
                          len(_JA_FAMILY) + rng.integers(0, len(_EN_FAMILY), n))
        n_jf, n_jm, n_ef, n_em = len(_JA_GIVEN_F), len(_JA_GIVEN_M), len(_EN_GIVEN_F), len(_EN_GIVEN_M)
        given = np.where(
            japanese,
            np.where(female, rng.integers(0, n_jf, n), n_jf + rng.integers(0, n_jm, n)),
            n_jf + n_jm + np.where(female, rng.integers(0, n_ef, n), n_ef + rng.integers(0, n_em, n)),
        )
        histology_only = site == _SITE_INDEX[None]
        with_text = histology_only | (rng.random(n) < 0.7)
        histology = np.where(with_text, _SITE_HISTOLOGY[site, rng.integers(0, 4, n)], len(_HISTOLOGY_TEXTS))
        is_breast = site == _SITE_INDEX["breast"]
        is_prostate = site == _SITE_INDEX["prostate"]
        is_nsclc = site == _SITE_INDEX["lung_nsclc"]
        hormone = np.where(is_breast, _tri(rng, n, 0.72, 0.05), np.where(is_prostate, _tri(rng, n, 0.85, 0.05), -1))
        targeted = np.where(
            is_nsclc, _tri(rng, n, 0.35, 0.10),
            np.where(is_breast | (site == _SITE_INDEX["kidney"]), _tri(rng, n, 0.25, 0.15), -1),
        ).astype(np.int8)
        previous_chemo = _tri(rng, n, 0.5, 0.12)
        fit = _tri(rng, n, 0.6, 0.15)
        unassigned = rng.random(n) < 0.05
        nurse_slot = (pid - 1) % len(self.nurse_ids)
        nurse = np.where(unassigned, -1, self.nurse_ids[nurse_slot]).astype(float)
        nurse[unassigned] = np.nan
        department = np.where(unassigned, _cat(rng, [0.5, 0.33, 0.17], n), self.nurse_departments[nurse_slot])
        illness = rng.normal(0.0, 1.0, n)  # shared by performance status and labs
        # Years of follow-up: repeated facts come at a rate per year, so each calendar month holds facts in
        # proportion to the patients followed then (a fixed count per patient would crowd the last months
        # with the records of the newly registered).  Mean about 2.1 years.
        years = (end - start + 1) / 365.25

        # --- spinal lesions: levels and findings ----------------------------------------------
        n_les = _cat(rng, [0.25, 0.14, 0.19, 0.21, 0.21], n)
        has_les = n_les > 0
        with_les = np.flatnonzero(has_les)
        keys = np.log(_LEVEL_WEIGHTS[1:] + 1e-12)[None, :] - np.log(-np.log(rng.random((len(with_les), len(LEVELS) - 1))))
        top = np.argsort(-keys, axis=1)[:, :4] + 1  # distinct level indices per patient (occiput excluded)
        l_owner, l_rank, _ = _expand(n_les)
        row_of = np.full(n, -1, dtype=np.int64)
        row_of[with_les] = np.arange(len(with_les))
        level = top[row_of[l_owner], l_rank]
        m = len(l_owner)
        spans = rng.random(m) < 0.10
        span_end = np.minimum(level + np.where(rng.random(m) < 0.7, 1, 2), len(LEVELS) - 1)
        span_end = np.where(spans & (span_end > level), span_end, NO_LEVEL)
        site_of = site[l_owner]
        lytic_sites = np.isin(site_of, [_SITE_INDEX[s] for s in ("kidney", "thyroid", "liver", "myeloma")])
        type_table = np.array([
            [0.55, 0.25, 0.12, 0.08],  # default: lytic, mixed, blastic, unknown
            [0.10, 0.15, 0.70, 0.05],  # prostate
            [0.40, 0.30, 0.25, 0.05],  # breast
            [0.90, 0.05, 0.00, 0.05],  # lytic primaries
        ])
        type_group = np.where(site_of == _SITE_INDEX["prostate"], 1, np.where(site_of == _SITE_INDEX["breast"], 2,
                              np.where(lytic_sites, 3, 0)))
        les = {
            "owner": l_owner,
            "level": level,
            "span_end": span_end,
            "active": rng.random(m) >= 0.03,
            "pain": _cat(rng, [0.20, 0.35, 0.25, 0.20], m),
            "lesion_type": _cat_rows(rng, type_table, type_group),
            "alignment": _cat(rng, [0.80, 0.12, 0.03, 0.05], m),
            "collapse": _cat(rng, [0.45, 0.25, 0.18, 0.07, 0.05], m),
            "posterolateral": _cat(rng, [0.55, 0.30, 0.10, 0.05], m),
            "bilsky": _cat(rng, [0.60, 0.17, 0.08, 0.05, 0.025, 0.01, 0.055], m),
            "wbb": np.where(rng.random(m) < 0.08, rng.integers(0, 5, m), 5),
            "recorded_by": rng.integers(0, 3, m),
        }
        # the patient's imaging interval follows the worst lesion (SINS >= 10 or Bilsky >= 1b: 60 days,
        # SINS 7-9: 90, else 180; perf.md's 60 / 90 / 180), so most are imaged about as the tiers ask
        sins_known = (_SINS_LOCATION[level] + _SINS_PAIN[les["pain"]] + _SINS_TYPE[les["lesion_type"]]
                      + _SINS_ALIGNMENT[les["alignment"]] + _SINS_COLLAPSE[les["collapse"]]
                      + _SINS_POSTEROLATERAL[les["posterolateral"]])
        risk = np.where((sins_known >= 10) | (les["bilsky"] >= 2), 2, (sins_known >= 7).astype(np.int64))
        worst = np.zeros(n, dtype=np.int64)
        np.maximum.at(worst, l_owner, risk)

        # --- imaging (each lesion is first seen on one of these studies) ------------------------
        # A staging study at registration, then the recent surveillance series ending at the last study
        # (the years between are not recorded: a complete history would be ~8 studies a patient, over
        # the row budget).  Lesions found at staging, and so bone disease and its events, start with the
        # patient's follow-up rather than crowding the last months.
        ivl = np.where(has_les, np.array([180, 90, 60])[worst], np.where(rng.random(n) < 0.1, 90, 180))
        staging = np.clip(reg + rng.integers(-20, 11, n), start, end)
        overdue = rng.random(n) < 0.20
        gap = np.where(active & overdue, ivl * (1.0 + 1.5 * rng.random(n)), rng.random(n) * ivl).astype(np.int64)
        last_img = np.clip(end - gap, staging, end)
        series = np.minimum(1 + rng.poisson(1.7, n), (last_img - staging) // ivl)
        n_img = np.where((~has_les) & (rng.random(n) < 0.05), 0, 1 + series)
        owner, rank, img_start = _expand(n_img)
        back = (n_img[owner] - 1 - rank) * ivl[owner]  # studies after the staging one: back from the last
        jitter = np.where(back > 0, rng.integers(-7, 8, len(owner)), 0)
        img_day = np.where(rank == 0, staging[owner], last_img[owner] - back + jitter)
        modality = _cat(rng, [0.45, 0.30, 0.08, 0.12, 0.05], len(owner))
        whole_body = (modality == _PET) | (modality == _BONE_SCAN)
        region = np.where(whole_body, np.where(rng.random(len(owner)) < 0.8, _OTHER_REGION, _WHOLE_SPINE),
                          _cat(rng, [0.45, 0.20, 0.17, 0.06, 0.02, 0.10], len(owner)))
        findings = _cat(rng, [0.5, 0.2, 0.15, 0.07, 0.05, 0.03], len(owner))
        img = {"owner": owner, "day": img_day, "modality": modality, "region": region, "findings": findings}

        # --- when each lesion was found and assessed -----------------------------------------
        found_on = np.where(rng.random(m) < 0.55, 0, np.floor(rng.random(m) * n_img[l_owner]).astype(np.int64))
        les["found_on"] = found_on
        les["first_seen"] = img_day[img_start[l_owner] + found_on]
        les["n_assess"] = 1 + np.minimum(rng.poisson(0.75, m), n_img[l_owner] - 1 - found_on)
        les = _sort(les, "owner", "first_seen")
        l_owner = les["owner"]
        les_first = _first(l_owner, n)  # first lesion row of each patient (-1 for none)

        # assessments: on the study that found the lesion and the next ones
        a_lesion, a_rank, _ = _expand(les["n_assess"])
        a_owner = l_owner[a_lesion]
        a_study = img_start[a_owner] + les["found_on"][a_lesion] + a_rank
        a_latest = a_rank == les["n_assess"][a_lesion] - 1
        k = len(a_lesion)
        milder = (~a_latest) & (rng.random(k) < 0.4)
        ass = {}
        for key, null in (("pain", 3), ("collapse", 4), ("bilsky", 6)):
            value = les[key][a_lesion]
            ass[key] = np.where(milder & (value != null) & (value > 0), value - 1, value)
        for key in ("lesion_type", "alignment", "posterolateral"):
            ass[key] = les[key][a_lesion]
        # a study that assessed a lesion is a cross-sectional spine study
        studied = np.unique(a_study)
        not_sectional = (img["modality"][studied] != _MRI) & (img["modality"][studied] != _CT)
        img["modality"][studied[not_sectional]] = _MRI
        img["region"][studied] = np.where(img["region"][studied] == _OTHER_REGION, _WHOLE_SPINE, img["region"][studied])
        les["assessed_on"] = img_day[img_start[l_owner] + les["found_on"] + les["n_assess"] - 1]
        les_levels_bits = ((np.int64(1) << (np.where(les["span_end"] == NO_LEVEL, les["level"], les["span_end"]) + 1))
                           - (np.int64(1) << les["level"]))

        # first sign of bone disease
        first_bone = np.where(les_first >= 0, _pick(les["first_seen"], les_first, 0), reg)
        first_bone = np.clip(first_bone, start, end)

        # --- metastatic status ----------------------------------------------------------------
        n_meta = 1 + (rng.random(n) < 0.30).astype(np.int64)
        m_owner, m_rank, _ = _expand(n_meta)
        q = len(m_owner)
        m_first = np.clip(reg + rng.integers(-14, 15, n), start, end)
        m_day = np.where(m_rank == 0, m_first[m_owner],
                         m_first[m_owner] + np.floor(rng.random(q) * np.minimum(end - m_first + 1, 366)[m_owner])
                         .astype(np.int64))  # restaged within a year
        visceral = _cat(rng, [0.50, 0.33, 0.17], q)
        prev_row = np.maximum(np.arange(q) - 1, 0)
        visceral = np.where(m_rank > 0, np.maximum(visceral, visceral[prev_row]), visceral)
        extraspinal = np.where(rng.random(q) < 0.35, 0, rng.geometric(0.3, q)).clip(0, 40)
        extraspinal = np.where(m_rank > 0, np.maximum(extraspinal, extraspinal[prev_row]), extraspinal)
        patient_levels = np.zeros(n, dtype=np.int64)
        np.bitwise_or.at(patient_levels, l_owner[les["active"]], les_levels_bits[les["active"]])
        level_count = np.bitwise_count(patient_levels).astype(np.int64)
        explicit = has_les[m_owner] & (rng.random(q) < 0.10)
        meta = {
            "owner": m_owner,
            "day": m_day,
            "visceral": np.where(rng.random(q) < 0.03, 3, visceral),
            "treatable": np.where(visceral == 0, -1, np.where(visceral == 1, _tri(rng, q, 0.6, 0.1), _tri(rng, q, 0.2, 0.1))),
            "removable": np.where(visceral == 0, -1, np.where(visceral == 1, _tri(rng, q, 0.2, 0.1), _tri(rng, q, 0.0, 0.1))),
            "brain": _tri(rng, q, 0.07, 0.08),
            "extraspinal": np.where(rng.random(q) < 0.04, np.nan, extraspinal.astype(float)),
            "vertebral": np.where(explicit, np.clip(np.maximum(level_count[m_owner], 1) + rng.poisson(1.0, q), 1, 30),
                                  np.nan),
            "fracture": _tri(rng, q, 0.05, 0.10),
        }
        has_extraspinal = np.bincount(m_owner[np.nan_to_num(meta["extraspinal"]) > 0], minlength=n) > 0
        bone = has_les | has_extraspinal

        # --- bone-modifying agents -----------------------------------------------------------
        on_bma = bone & (rng.random(n) < 0.80)
        agent = np.where(on_bma, np.where(rng.random(n) < 0.55, _DENOSUMAB, _ZOLEDRONIC), _NO_AGENT)
        regimen = np.where(agent == _ZOLEDRONIC, np.where(rng.random(n) < 0.55, 0, 1), 2)
        b_ivl = np.where(regimen == 1, 84, 28)
        b_start = np.minimum(first_bone + rng.integers(0, 46, n), end)
        stopped = (~active) | (rng.random(n) < 0.22)
        want = 1 + rng.poisson(3.4, n)
        late = rng.random(n) < 0.20
        b_gap = np.where(late, b_ivl + 7 + rng.integers(0, 61, n), np.floor(rng.random(n) * (b_ivl + 7))).astype(np.int64)
        b_last = np.where(stopped, np.minimum(b_start + (want - 1) * b_ivl, end - rng.integers(0, 30, n)), today - b_gap)
        b_last = np.clip(b_last, b_start, end)
        # the first dose, then a stopped course whole or an ongoing course's recent doses (as for imaging)
        fit_doses = (b_last - b_start) // b_ivl
        later = np.where(stopped, fit_doses, np.minimum(rng.poisson(3.2, n), fit_doses))
        n_dose = np.where(on_bma, 1 + later, 0)
        zol_dose = np.array([4.0, 3.5, 3.3, 3.0])[_cat(rng, [0.85, 0.08, 0.04, 0.03], n)]
        osteo = (~on_bma) & (rng.random(n) < 0.03)  # osteoporosis-dose denosumab, not SRE prevention
        n_osteo = np.where(osteo, np.minimum(1 + rng.integers(0, 3, n), (end - start) // 182 + 1), 0)
        o_last = end - rng.integers(0, 150, n)
        o_last = np.maximum(o_last, start + (n_osteo - 1) * 182)
        d_owner, d_rank, _ = _expand(n_dose)
        d_back = (n_dose[d_owner] - 1 - d_rank) * b_ivl[d_owner]
        d_jitter = np.where(d_back > 0, rng.integers(-3, 4, len(d_owner)), 0)
        d_day = np.where(d_rank == 0, b_start[d_owner], np.minimum(b_last[d_owner] - d_back + d_jitter, end[d_owner]))
        o_owner, o_rank, _ = _expand(n_osteo)
        o_day = o_last[o_owner] - (n_osteo[o_owner] - 1 - o_rank) * 182
        bma = _sort({
            "owner": np.r_[d_owner, o_owner],
            "day": np.r_[d_day, o_day],
            "agent": np.r_[agent[d_owner], np.full(len(o_owner), _DENOSUMAB)],
            "dose": np.r_[np.where(agent[d_owner] == _DENOSUMAB, 120.0, zol_dose[d_owner]), np.full(len(o_owner), 60.0)],
            "prevention": np.r_[np.ones(len(d_owner), bool), np.zeros(len(o_owner), bool)],
        }, "owner", "day")
        first_dose = _pick(bma["day"], _first(bma["owner"], n, bma["prevention"]), NULL_DAY)
        not_indicated = np.where(bone & ~on_bma & (rng.random(n) < 0.3), rng.integers(1, 5, n), 0)
        transition = np.where((agent == _DENOSUMAB) & stopped & (rng.random(n) < 0.4), rng.integers(1, 3, n), 0)

        # --- dental examinations ----------------------------------------------------------------
        pre = on_bma & (rng.random(n) < 0.72)
        follow = on_bma & (rng.random(n) < 0.35)
        other = (~on_bma) & (rng.random(n) < 0.05)
        pre_day = np.maximum(first_dose - rng.integers(7, 61, n), start)
        follow_day = _between(rng, np.maximum(first_dose, start), end)
        other_day = _between(rng, start, end)
        dn_owner = np.r_[np.flatnonzero(pre), np.flatnonzero(follow), np.flatnonzero(other)]
        dn_kind = np.r_[np.zeros(pre.sum(), np.int64), np.ones(follow.sum(), np.int64), np.full(other.sum(), 2)]
        dn_day = np.r_[pre_day[pre], follow_day[follow], other_day[other]]
        dn_onj = rng.random(len(dn_owner)) < np.where(dn_kind == 1, 0.04, 0.005)
        dental = _sort({
            "owner": dn_owner,
            "day": dn_day,
            "onj": dn_onj,
            "findings": np.where(dn_onj, 4, _cat(rng, [0.4, 0.4, 0.12, 0.08], len(dn_owner))),
        }, "owner", "day")

        # --- performance status (a drifting random walk) ---------------------------------------
        n_ps = 1 + rng.poisson(1.3 * years)
        p_owner, p_rank, p_start = _expand(n_ps)
        r = len(p_owner)
        p_day = _between(rng, start[p_owner], end[p_owner])
        ps = _sort({"owner": p_owner, "day": p_day}, "owner", "day")
        first_ecog = np.clip(_cat(rng, [0.30, 0.40, 0.18, 0.09, 0.03], n) + (illness > 1.2), 0, 4)
        step = _cat(rng, [0.10, 0.64, 0.22, 0.04], r) - 1
        step = np.where(p_rank == 0, first_ecog[p_owner], step)  # p_rank is the rank after sorting as well
        walk = np.cumsum(step)
        walk = walk - walk[p_start[p_owner]] + first_ecog[p_owner]
        ecog = np.clip(walk, 0, 4)
        kps_of = np.array([[100, 90], [80, 70], [60, 50], [40, 30], [20, 10]])
        kps = kps_of[ecog, rng.integers(0, 2, r)].astype(float)
        u = rng.random(r)
        ps["ecog"] = np.where(u < 0.06, np.nan, ecog.astype(float))
        ps["kps"] = np.where(u < 0.28, kps, np.nan)

        # --- neurology -------------------------------------------------------------------------
        n_neuro = rng.poisson(0.62 * years)
        nr_owner, nr_rank, nr_start = _expand(n_neuro)
        s = len(nr_owner)
        neuro = _sort({"owner": nr_owner, "day": _between(rng, start[nr_owner], end[nr_owner])}, "owner", "day")
        worse = np.where(nr_rank == 0, _cat(rng, [0.88, 0.07, 0.03, 0.01, 0.01], s), (rng.random(s) < 0.08).astype(np.int64))
        severity = np.cumsum(worse)
        severity = np.clip(severity - severity[nr_start[nr_owner]] + worse[nr_start[nr_owner]], 0, 4)
        worsened = (nr_rank > 0) & (worse > 0) & (severity > 0)
        amb_table = np.array([[0.80, 0.17, 0.03, 0.0], [0.20, 0.50, 0.25, 0.05], [0.0, 0.10, 0.50, 0.40],
                              [0.0, 0.0, 0.10, 0.90], [0.0, 0.0, 0.05, 0.95]])
        ambulation = _cat_rows(rng, amb_table, severity)
        neuro["frankel"] = np.where(rng.random(s) < 0.08, 5, severity)
        neuro["ambulation"] = np.where(rng.random(s) < 0.08, 4, ambulation)
        neuro["new_deficit"] = rng.random(s) < np.where(worsened, 0.30, 0.02)
        neuro["cord_pain"] = rng.random(s) < 0.02
        neuro["spinal_pain"] = rng.random(s) < 0.06
        empty = (neuro["frankel"] == 5) & (neuro["ambulation"] == 4) & ~(
            neuro["new_deficit"] | neuro["cord_pain"] | neuro["spinal_pain"])
        neuro["ambulation"] = np.where(empty, ambulation, neuro["ambulation"])

        # --- laboratory panels ---------------------------------------------------------------------
        n_panels = rng.poisson(0.5 * years)
        pn_owner, _, _ = _expand(n_panels)
        pn_day = _between(rng, start[pn_owner], end[pn_owner])
        include = rng.random((len(pn_owner), len(LAB_TESTS))) < np.array([0.92, 0.85, 0.75, 0.92, 0.92, 0.70, 0.92])
        panel, test = np.nonzero(include)
        lb_owner = pn_owner[panel]
        z = illness[lb_owner]
        w = len(panel)
        noise = rng.normal(0.0, 1.0, w)
        value = np.select(
            [test == 0, test == 1, test == 2, test == 3, test == 4, test == 5],
            [
                np.round(np.clip(3.9 - 0.35 * z + 0.3 * noise, 1.5, 5.2), 1),
                np.round(np.clip(np.exp(np.log(0.3) + 0.9 * z + 0.7 * noise), 0.01, 30.0), 2),
                np.round(np.clip(np.exp(np.log(210.0) + 0.25 * z + 0.25 * noise), 90.0, 3000.0), 0),
                np.round(np.clip(240000.0 * np.exp(0.3 * noise - 0.12 * np.maximum(z, 0))
                                 * np.where(rng.random(w) < 0.04, 0.3, 1.0), 8000.0, 900000.0), -3),
                np.round(np.clip(9.4 + 0.2 * z + 0.45 * noise + np.where(rng.random(w) < 0.025, 1.6, 0.0), 6.0, 15.0), 1),
                np.round(np.clip(np.exp(np.log(0.6) + 0.45 * noise + 0.1 * z), 0.1, 12.0), 1),
            ],
            np.round(np.clip(np.exp(np.log(0.8) + 0.3 * noise), 0.3, 8.0), 2),
        )
        # ids grouped by test, in (patient, date) order within a test: "latest by (date, id)" per test is
        # unchanged, and the writer can give each test's rows their test, LOINC and unit as literals
        labs = _sort({"owner": lb_owner, "day": pn_day[panel], "test": test, "value": value}, "test", "owner", "day")

        # --- treatments --------------------------------------------------------------------------------
        def lesion_of(owners: np.ndarray) -> np.ndarray:
            """A random lesion row of each owner (owners all have lesions)."""
            return les_first[owners] + np.floor(rng.random(len(owners)) * n_les[owners]).astype(np.int64)

        n_rt = np.where(has_les & (rng.random(n) < 0.33), 1 + (rng.random(n) < 0.15), 0)
        rt_owner, _, _ = _expand(n_rt)
        rt_les = lesion_of(rt_owner)
        rt_start = np.minimum(les["first_seen"][rt_les] + rng.integers(3, 41, len(rt_owner)), end[rt_owner])
        schedule = _cat(rng, _RT_SCHEDULES[:, 3], len(rt_owner))
        fractions = _RT_SCHEDULES[schedule, 2].astype(np.int64)
        rt_end = rt_start + np.ceil((fractions - 1) * 1.4).astype(np.int64)
        rt_end = np.where(rt_end <= end[rt_owner], rt_end, np.where(active[rt_owner], NULL_DAY, end[rt_owner]))
        n_sg = (has_les & (rng.random(n) < 0.07)).astype(np.int64)
        sg_owner, _, _ = _expand(n_sg)
        sg_les = lesion_of(sg_owner)
        sg_start = np.minimum(les["first_seen"][sg_les] + rng.integers(0, 61, len(sg_owner)), end[sg_owner])
        sg_mod = _SEPARATION + _cat(rng, _SURGERY_SHARES, len(sg_owner))
        margin = np.round(np.clip(np.exp(np.log(3.6) + 0.45 * rng.normal(0, 1, len(sg_owner))), 0.5, 12.0), 1)
        margin = np.where((sg_mod == _SEPARATION) & (rng.random(len(sg_owner)) >= 0.05), margin, np.nan)
        n_lines = _cat(rng, [0.14, 0.48, 0.29, 0.09], n)
        sy_owner, sy_rank, sy_first = _expand(n_lines)
        duration = rng.integers(60, 541, len(sy_owner))
        pause = rng.integers(0, 31, len(sy_owner))
        line0 = np.clip(reg + rng.integers(-30, 61, n), start, end)
        step_days = duration + pause
        offset = np.cumsum(step_days)
        group_first = sy_first[sy_owner]
        offset = offset - step_days - (offset[group_first] - step_days[group_first])
        sy_start = line0[sy_owner] + offset
        keep = sy_start <= end[sy_owner]
        sy_owner, sy_rank, sy_start, duration = sy_owner[keep], sy_rank[keep], sy_start[keep], duration[keep]
        sy_last = np.r_[sy_owner[1:] != sy_owner[:-1], True] if len(sy_owner) else np.zeros(0, bool)
        next_start = np.r_[sy_start[1:], 0] if len(sy_owner) else np.zeros(0, np.int64)
        sy_end = np.where(sy_last, np.minimum(sy_start + duration, end[sy_owner]), np.minimum(sy_start + duration, next_start))
        ongoing = sy_last & active[sy_owner] & ((rng.random(len(sy_owner)) < 0.65) | (sy_start + duration > today))
        sy_end = np.where(ongoing, NULL_DAY, sy_end)
        line_table = np.array([
            [0.50, 0.10, 0.10, 0.30],  # default: chemotherapy, targeted, hormone, immunotherapy
            [0.35, 0.15, 0.50, 0.00],  # breast
            [0.20, 0.00, 0.80, 0.00],  # prostate
            [0.10, 0.80, 0.00, 0.10],  # NSCLC on targeted therapy
            [0.45, 0.05, 0.00, 0.50],  # other NSCLC
        ])
        s_of = site[sy_owner]
        line_group = np.where(s_of == _SITE_INDEX["breast"], 1, np.where(s_of == _SITE_INDEX["prostate"], 2,
                              np.where(s_of == _SITE_INDEX["lung_nsclc"], np.where(targeted[sy_owner] == 1, 3, 4), 0)))
        sy_mod = 8 + _cat_rows(rng, line_table, line_group)
        nr, ns, ny = len(rt_owner), len(sg_owner), len(sy_owner)
        treat = _sort({
            "owner": np.r_[rt_owner, sg_owner, sy_owner],
            "day": np.r_[rt_start, sg_start, sy_start],
            "end": np.r_[rt_end, sg_start, sy_end],
            "kind": np.r_[np.full(nr, _RT), np.full(ns, _SURGERY), np.full(ny, _SYSTEMIC)],
            "modality": np.r_[_RT_SCHEDULES[schedule, 0].astype(np.int64), sg_mod, sy_mod],
            "level": np.r_[les["level"][rt_les], les["level"][sg_les], np.full(ny, NO_LEVEL)],
            "dose": np.r_[_RT_SCHEDULES[schedule, 1], np.full(ns + ny, np.nan)],
            "fractions": np.r_[fractions.astype(float), np.full(ns + ny, np.nan)],
            "margin": np.r_[np.full(nr, np.nan), margin, np.full(ny, np.nan)],
            "emergency": np.r_[rng.random(nr) < 0.08, rng.random(ns) < 0.25, np.zeros(ny, bool)],
        }, "owner", "day")

        # --- skeletal-related events --------------------------------------------------------------------
        # a first event at a constant hazard from the first sign of bone disease (per year), then 0-3 more
        # after it (a fracture is often followed by radiotherapy or surgery to the same bone)
        hazard = np.where(has_les, 0.11, np.where(has_extraspinal, 0.08, 0.01))
        first_event = first_bone + np.floor(rng.exponential(1.0, n) / hazard * 365.25).astype(np.int64)
        n_sre = np.where(first_event <= end, 1 + np.minimum(rng.poisson(0.9, n), 3), 0)
        e_owner, e_rank, _ = _expand(n_sre)
        c = len(e_owner)
        order = [SreType.RADIATION_TO_BONE, SreType.PATHOLOGICAL_FRACTURE_VERTEBRAL,
                 SreType.PATHOLOGICAL_FRACTURE_NON_VERTEBRAL, SreType.SPINAL_CORD_COMPRESSION, SreType.SURGERY_TO_BONE,
                 SreType.HYPERCALCAEMIA_OF_MALIGNANCY, SreType.ANTINEOPLASTIC_CHANGE_FOR_BONE_PAIN]
        sre_table = np.array([[0.38, 0.18, 0.08, 0.10, 0.10, 0.10, 0.06],   # with spinal lesions
                              [0.45, 0.00, 0.25, 0.00, 0.12, 0.13, 0.05]])  # without
        kind = np.array([_SRE_INDEX[t] for t in order])[_cat_rows(rng, sre_table, (~has_les[e_owner]).astype(np.int64))]
        spinal = has_les[e_owner] & (
            (kind == _SRE_INDEX[SreType.PATHOLOGICAL_FRACTURE_VERTEBRAL])
            | (kind == _SRE_INDEX[SreType.SPINAL_CORD_COMPRESSION])
            | ((kind == _SRE_INDEX[SreType.RADIATION_TO_BONE]) & (rng.random(c) < 0.7))
            | ((kind == _SRE_INDEX[SreType.SURGERY_TO_BONE]) & (rng.random(c) < 0.5))
        )
        e_level = np.full(c, NO_LEVEL)
        e_level[spinal] = les["level"][lesion_of(e_owner[spinal])]
        p_emergency = np.zeros(len(SreType))
        for t_, p_ in ((SreType.SPINAL_CORD_COMPRESSION, 0.8), (SreType.PATHOLOGICAL_FRACTURE_VERTEBRAL, 0.45),
                       (SreType.PATHOLOGICAL_FRACTURE_NON_VERTEBRAL, 0.55), (SreType.HYPERCALCAEMIA_OF_MALIGNANCY, 0.5),
                       (SreType.SURGERY_TO_BONE, 0.3), (SreType.RADIATION_TO_BONE, 0.1)):
            p_emergency[_SRE_INDEX[t_]] = p_
        # the later events within six months of the first; those that would fall after today did not happen yet
        e_day = first_event[e_owner] + np.where(e_rank == 0, 0, rng.integers(1, 183, c))
        emergency = rng.random(c) < p_emergency[kind]
        happened = e_day <= end[e_owner]
        events = _sort({
            "owner": e_owner[happened],
            "day": e_day[happened],
            "type": kind[happened],
            "level": e_level[happened],
            "emergency": emergency[happened],
        }, "owner", "day")

        # --- Cancer Locomo ------------------------------------------------------------------------------------
        n_loc = np.minimum(rng.poisson(0.24 * years), 3)
        holders = np.flatnonzero(n_loc > 0)
        weights = np.array([0.18, 0.01, 0.05, 0.14, 0.10, 0.12, 0.05, 0.04, 0.12, 0.12, 0.07])
        loc_w = np.tile(weights, (len(holders), 1))
        loc_w[~has_les[holders], 0] = 0.0
        loc_w[site[holders] != _SITE_INDEX["soft_tissue_sarcoma"], 1] = 0.0
        loc_keys = np.log(loc_w + 1e-300) - np.log(-np.log(rng.random(loc_w.shape)))
        loc_top = np.argsort(-loc_keys, axis=1)[:, :3]
        lc_owner, lc_rank, _ = _expand(n_loc)
        row_of[:] = -1
        row_of[holders] = np.arange(len(holders))
        condition = loc_top[row_of[lc_owner], lc_rank]
        ctype = _LOCOMO_TYPE[condition]
        f = len(lc_owner)
        onset = _between(rng, start[lc_owner], end[lc_owner])
        resolved = onset + rng.integers(30, 366, f)
        resolved = np.where((rng.random(f) < 0.12) & (resolved <= end[lc_owner]), resolved, NULL_DAY)
        plan = np.where(rng.random(f) < np.where(ctype == 2, 0.55, 0.3), rng.integers(1, len(PLAN_LUT), f), 0)
        year_ago = today - 365
        u = rng.random(f)
        recent_lo = np.maximum(onset, year_ago)
        review = np.where(
            ctype == 3,
            np.where(u < 0.5, _between(rng, recent_lo, np.maximum(end[lc_owner], recent_lo)),
                     np.where(u < 0.7, _between(rng, onset, np.maximum(np.minimum(end[lc_owner], year_ago - 1), onset)),
                              NULL_DAY)),
            np.where(u < 0.15, _between(rng, onset, end[lc_owner]), NULL_DAY),
        )
        review = np.where((review != NULL_DAY) & (review > end[lc_owner]), NULL_DAY, review)
        locomo = _sort({"owner": lc_owner, "day": onset, "condition": condition, "type": ctype, "resolved": resolved,
                        "plan": plan, "review": review}, "owner", "day")

        # --- cancer board --------------------------------------------------------------------------------
        n_board = ((has_les & (rng.random(n) < 0.07)) | (rng.random(n) < 0.005)).astype(np.int64)
        bd_owner, _, _ = _expand(n_board)
        g = len(bd_owner)
        queued = _between(rng, first_bone[bd_owner], np.minimum(end, first_bone + 365)[bd_owner])  # within a year
        decided = queued + rng.integers(0, 22, g)
        decided = np.where((rng.random(g) < 0.8) & (decided <= end[bd_owner]), decided, NULL_DAY)
        board = {"owner": bd_owner, "day": queued, "reason": rng.integers(0, len(BOARD_REASON_LUT), g),
                 "decided": decided,
                 "decision": np.where(decided != NULL_DAY, rng.integers(1, len(BOARD_DECISION_LUT), g), 0),
                 "by": rng.integers(0, 3, g)}

        # ------------------------------------------------------------------------------------------------
        # ids (rows are in (patient, date) order, so id order is date order within a patient)
        def take_ids(table: str, count: int) -> tuple[str, np.ndarray]:
            return table, np.arange(count, dtype=np.int64)

        img_ids = take_ids("imaging_study", len(img["owner"]))
        les_ids = take_ids("spinal_lesion", len(l_owner))
        ass_ids = take_ids("lesion_assessment", k)
        tables: dict[str, tuple[int, list[Column]]] = {}
        tables["patient"] = (n, [
            ("id", "i", pid),
            ("mrn", "o", np.array([f"D{i:07d}" for i in pid.tolist()], dtype=object)),
            ("family_name", "c", (family, FAMILY_LUT)),
            ("given_name", "c", (given, GIVEN_LUT)),
            ("birth_date", "d", birth),
            ("sex", "c", (female.astype(np.int64), SEX_LUT)),
            ("department", "c", (department, DEPT_LUT)),
            ("primary_site", "c", (site, SITE_LUT)),
            ("primary_histology", "c", (histology, HISTOLOGY_LUT)),
            ("hormone_dependent", "t", hormone),
            ("molecular_targeted_therapy", "t", targeted),
            ("previous_chemotherapy", "t", previous_chemo),
            ("fit_for_surgery", "t", fit),
            ("status", "c", (status, STATUS_LUT)),
            ("status_on", "d", status_on),
            ("deceased_on", "d", np.where(status == 1, status_on, NULL_DAY)),
            ("registered_on", "d", reg),
            ("assigned_nurse_id", "i?", nurse),
            ("zoledronic_regimen", "c", (regimen, REGIMEN_LUT)),
            ("bma_not_indicated_reason", "c", (not_indicated, NOT_INDICATED_LUT)),
            ("denosumab_transition_plan", "c", (transition, TRANSITION_LUT)),
        ])
        tables["imaging_study"] = (len(img_ids[1]), [
            ("id", "r", img_ids),
            ("patient_id", "i", pid[img["owner"]]),
            ("performed_on", "d", img["day"]),
            ("modality", "c", (img["modality"], MODALITY_LUT)),
            ("region", "c", (img["region"], REGION_LUT)),
            ("findings", "c", (img["findings"], FINDINGS_LUT)),
        ])
        wbb = les["wbb"]
        tables["spinal_lesion"] = (len(les_ids[1]), [
            ("id", "r", les_ids),
            ("patient_id", "i", pid[l_owner]),
            ("level", "c", (les["level"], LEVEL_LUT)),
            ("level_span_end", "c", (les["span_end"], LEVEL_LUT)),
            ("first_seen_on", "d", les["first_seen"]),
            ("active", "b", les["active"]),
            ("pain", "c", (les["pain"], PAIN_LUT)),
            ("lesion_type", "c", (les["lesion_type"], TYPE_LUT)),
            ("alignment", "c", (les["alignment"], ALIGN_LUT)),
            ("collapse", "c", (les["collapse"], COLLAPSE_LUT)),
            ("posterolateral", "c", (les["posterolateral"], POSTERO_LUT)),
            ("bilsky_escc", "c", (les["bilsky"], BILSKY_LUT)),
            ("wbb_zones", "c", (wbb, WBB_ZONES_LUT)),
            ("wbb_layers", "c", (np.where(wbb < 5, wbb % 4, 4), WBB_LAYERS_LUT)),
            ("wbb_numbering", "c", (np.where(wbb < 5, 0, 1), WBB_NUMBERING_LUT)),
            ("assessed_on", "d", les["assessed_on"]),
        ])
        tables["lesion_assessment"] = (k, [
            ("id", "r", ass_ids),
            ("lesion_id", "r", ("spinal_lesion", les_ids[1][a_lesion])),
            ("patient_id", "i", pid[a_owner]),
            ("assessed_on", "d", img_day[a_study]),
            ("imaging_study_id", "r", ("imaging_study", img_ids[1][a_study])),
            ("pain", "c", (ass["pain"], PAIN_LUT)),
            ("lesion_type", "c", (ass["lesion_type"], TYPE_LUT)),
            ("alignment", "c", (ass["alignment"], ALIGN_LUT)),
            ("collapse", "c", (ass["collapse"], COLLAPSE_LUT)),
            ("posterolateral", "c", (ass["posterolateral"], POSTERO_LUT)),
            ("bilsky_escc", "c", (ass["bilsky"], BILSKY_LUT)),
            ("recorded_by", "c", (les["recorded_by"][a_lesion], RECORDED_BY_LUT)),
        ])
        tables["performance_status"] = (r, [
            ("id", "r", take_ids("performance_status", r)),
            ("patient_id", "i", pid[ps["owner"]]),
            ("recorded_on", "d", ps["day"]),
            ("ecog", "i?", ps["ecog"]),
            ("kps", "i?", ps["kps"]),
        ])
        tables["neuro_status"] = (s, [
            ("id", "r", take_ids("neuro_status", s)),
            ("patient_id", "i", pid[neuro["owner"]]),
            ("recorded_on", "d", neuro["day"]),
            ("frankel_grade", "c", (neuro["frankel"], FRANKEL_LUT)),
            ("ambulatory_status", "c", (neuro["ambulation"], AMBULATION_LUT)),
            ("new_deficit", "b", neuro["new_deficit"]),
            ("pain_suggests_cord_compression", "b", neuro["cord_pain"]),
            ("new_spinal_pain", "b", neuro["spinal_pain"]),
        ])
        tables["lab_result"] = (w, [
            ("id", "r", take_ids("lab_result", w)),
            ("patient_id", "i", pid[labs["owner"]]),
            ("collected_on", "d", labs["day"]),
            ("test", "c", (labs["test"], TEST_LUT)),
            ("loinc", "c", (labs["test"], LOINC_LUT)),
            ("value", "f", labs["value"]),
            ("unit", "c", (labs["test"], UNIT_LUT)),
        ])
        tables["metastatic_status"] = (q, [
            ("id", "r", take_ids("metastatic_status", q)),
            ("patient_id", "i", pid[meta["owner"]]),
            ("recorded_on", "d", meta["day"]),
            ("visceral_status", "c", (meta["visceral"], VISCERAL_LUT)),
            ("visceral_treatable", "t", meta["treatable"]),
            ("visceral_removable", "t", meta["removable"]),
            ("brain_metastases", "t", meta["brain"]),
            ("extraspinal_bone_metastases", "i?", meta["extraspinal"]),
            ("vertebral_body_metastases", "i?", meta["vertebral"]),
            ("extraspinal_pathological_fracture", "t", meta["fracture"]),
        ])
        nb = len(bma["owner"])
        tables["bma_administration"] = (nb, [
            ("id", "r", take_ids("bma_administration", nb)),
            ("patient_id", "i", pid[bma["owner"]]),
            ("given_on", "d", bma["day"]),
            ("agent", "c", (bma["agent"], AGENT_LUT)),
            ("dose_mg", "f", bma["dose"]),
            ("sre_prevention", "b", bma["prevention"]),
        ])
        nd = len(dental["owner"])
        tables["dental_exam"] = (nd, [
            ("id", "r", take_ids("dental_exam", nd)),
            ("patient_id", "i", pid[dental["owner"]]),
            ("examined_on", "d", dental["day"]),
            ("onj_suspected", "b", dental["onj"]),
            ("findings", "c", (dental["findings"], DENTAL_FINDINGS_LUT)),
        ])
        nt = len(treat["owner"])
        tables["treatment"] = (nt, [
            ("id", "r", take_ids("treatment", nt)),
            ("patient_id", "i", pid[treat["owner"]]),
            ("kind", "c", (treat["kind"], KIND_LUT)),
            ("modality", "c", (treat["modality"], TREATMENT_LUT)),
            ("started_on", "d", treat["day"]),
            ("ended_on", "d", treat["end"]),
            ("level", "c", (treat["level"], LEVEL_LUT)),
            ("to_bone", "b", treat["kind"] != _SYSTEMIC),
            ("dose_gy", "f?", treat["dose"]),
            ("fractions", "i?", treat["fractions"]),
            ("separation_margin_mm", "f?", treat["margin"]),
            ("emergency", "b", treat["emergency"]),
        ])
        ne = len(events["owner"])
        tables["skeletal_event"] = (ne, [
            ("id", "r", take_ids("skeletal_event", ne)),
            ("patient_id", "i", pid[events["owner"]]),
            ("occurred_on", "d", events["day"]),
            ("event_type", "c", (events["type"], SRE_LUT)),
            ("level", "c", (events["level"], LEVEL_LUT)),
            ("emergency", "b", events["emergency"]),
        ])
        tables["locomo_condition"] = (f, [
            ("id", "r", take_ids("locomo_condition", f)),
            ("patient_id", "i", pid[locomo["owner"]]),
            ("condition", "c", (locomo["condition"], LOCOMO_LUT)),
            ("onset_on", "d", locomo["day"]),
            ("resolved_on", "d", locomo["resolved"]),
            ("management_plan", "c", (locomo["plan"], PLAN_LUT)),
            ("orthopaedic_review_on", "d", locomo["review"]),
        ])
        tables["board_case"] = (g, [
            ("id", "r", take_ids("board_case", g)),
            ("patient_id", "i", pid[board["owner"]]),
            ("queued_on", "d", board["day"]),
            ("reason", "c", (board["reason"], BOARD_REASON_LUT)),
            ("decided_on", "d", board["decided"]),
            ("decision", "c", (board["decision"], BOARD_DECISION_LUT)),
            ("decided_by", "c", (np.where(board["decided"] != NULL_DAY, board["by"], 3),
                                 BOARD_BY_LUT)),
        ])

        # ------------------------------------------------------------------------------------------------
        # patient_state, exactly as surveillance.state.compute_state derives it from these rows
        st: dict[str, tuple[str, Any]] = {}
        has_ecog = ~np.isnan(ps["ecog"])
        last, prev = _last(ps["owner"], n, has_ecog)
        st["ecog"] = ("i?", _pick(ps["ecog"], last, np.nan))
        st["ecog_on"] = ("d", _pick(ps["day"], last, NULL_DAY))
        st["previous_ecog"] = ("i?", _pick(ps["ecog"], prev, np.nan))
        last, _ = _last(ps["owner"], n, ~np.isnan(ps["kps"]))
        st["kps"] = ("i?", _pick(ps["kps"], last, np.nan))
        st["kps_on"] = ("d", _pick(ps["day"], last, NULL_DAY))

        no = neuro["owner"]
        last, prev = _last(no, n, neuro["frankel"] != 5)
        st["frankel_grade"] = ("c", (_pick(neuro["frankel"], last, 5), FRANKEL_LUT))
        st["previous_frankel_grade"] = ("c", (_pick(neuro["frankel"], prev, 5), FRANKEL_LUT))
        last, prev = _last(no, n, neuro["ambulation"] != 4)
        st["ambulatory_status"] = ("c", (_pick(neuro["ambulation"], last, 4), AMBULATION_LUT))
        st["previous_ambulatory_status"] = ("c", (_pick(neuro["ambulation"], prev, 4), AMBULATION_LUT))
        st["neuro_on"] = ("d", _pick(neuro["day"], _last(no, n)[0], NULL_DAY))
        st["new_deficit_on"] = ("d", _pick(neuro["day"], _last(no, n, neuro["new_deficit"])[0], NULL_DAY))
        st["cord_compression_pain_on"] = ("d", _pick(neuro["day"], _last(no, n, neuro["cord_pain"])[0], NULL_DAY))
        st["new_spinal_pain_on"] = ("d", _pick(neuro["day"], _last(no, n, neuro["spinal_pain"])[0], NULL_DAY))

        lo = labs["owner"]
        latest_day = {}
        for i, test_ in enumerate(LAB_TESTS):
            last, _ = _last(lo, n, labs["test"] == i)
            st[LABS[test_].state_field] = ("f?", _pick(labs["value"], last, np.nan))
            latest_day[test_] = _pick(labs["day"], last, NULL_DAY)
            if test_ in (LabTest.ALBUMIN, LabTest.CALCIUM, LabTest.CREATININE):
                st[f"{test_.value}_on"] = ("d", latest_day[test_])
        katagiri_days = np.max([latest_day[t_] for t_ in LAB_TESTS if t_ != LabTest.CREATININE], axis=0)
        st["labs_on"] = ("d", katagiri_days)

        bo = bma["owner"]
        prevention = bma["prevention"]
        first = _first(bo, n, prevention)
        last, _ = _last(bo, n, prevention)
        st["bma_agent"] = ("c", (_pick(bma["agent"], last, _NO_AGENT), AGENT_LUT))
        bma_first_on = _pick(bma["day"], first, NULL_DAY)
        st["bma_first_on"] = ("d", bma_first_on)
        st["bma_last_on"] = ("d", _pick(bma["day"], last, NULL_DAY))
        st["bma_last_dose_mg"] = ("f?", _pick(bma["dose"], last, np.nan))
        any_bma = np.bincount(bo, minlength=n) > 0
        st["bma_sre_prevention"] = ("t", np.where(any_bma, (last >= 0).astype(np.int8), -1).astype(np.int8))
        st["denosumab_last_on"] = ("d", _pick(bma["day"], _last(bo, n, prevention & (bma["agent"] == _DENOSUMAB))[0],
                                              NULL_DAY))
        zol_first = _pick(bma["day"], _first(bo, n, prevention & (bma["agent"] == _ZOLEDRONIC)), NULL_DAY)
        st["zoledronic_first_on"] = ("d", zol_first)
        creatinine = labs["test"] == _CREATININE
        baseline_rows = creatinine & (zol_first[lo] != NULL_DAY) & (labs["day"] <= zol_first[lo])
        st["creatinine_baseline_mg_dl"] = ("f?", _pick(labs["value"], _last(lo, n, baseline_rows)[0], np.nan))

        do = dental["owner"]
        last, _ = _last(do, n)
        st["dental_last_on"] = ("d", _pick(dental["day"], last, NULL_DAY))
        st["onj_suspected"] = ("b", _pick(dental["onj"], last, False).astype(bool))
        first_exam = _pick(dental["day"], _first(do, n), NULL_DAY)
        before = (first_exam != NULL_DAY) & (first_exam <= bma_first_on)
        st["dental_before_first_bma"] = ("t", np.where(bma_first_on == NULL_DAY, -1, before).astype(np.int8))

        mo = meta["owner"]
        for key, column in (("visceral", "visceral_status"), ("treatable", "visceral_treatable"),
                            ("removable", "visceral_removable"), ("brain", "brain_metastases"),
                            ("extraspinal", "extraspinal_bone_metastases"),
                            ("fracture", "extraspinal_pathological_fracture")):
            values = meta[key]
            if key == "visceral":
                last, _ = _last(mo, n, values != 3)
                st[column] = ("c", (_pick(values, last, 3), VISCERAL_LUT))
            elif key == "extraspinal":
                last, _ = _last(mo, n, ~np.isnan(values))
                st[column] = ("i?", _pick(values, last, np.nan))
            else:
                last, _ = _last(mo, n, values != -1)
                st[column] = ("t", _pick(values, last, -1).astype(np.int8))
        explicit_count = _pick(meta["vertebral"], _last(mo, n, ~np.isnan(meta["vertebral"]))[0], np.nan)
        derived = np.where(level_count > 0, level_count.astype(float), np.nan)
        st["vertebral_body_metastases"] = ("i?", np.where(np.isnan(explicit_count), derived, explicit_count))

        st["lesion_count"] = ("i", np.bincount(l_owner[les["active"]], minlength=n))
        st["last_new_lesion_on"] = ("d", _group_max(l_owner, les["first_seen"], n, les["active"]))

        qualifying = np.isin(img["modality"], [_MRI, _CT, _PET, _BONE_SCAN]) & (
            (img["region"] != _OTHER_REGION) | (img["modality"] == _PET) | (img["modality"] == _BONE_SCAN))
        st["last_imaging_on"] = ("d", _group_max(img["owner"], img["day"], n, qualifying))

        to = treat["owner"]
        sbrt = ((treat["modality"] == 1) | (treat["modality"] == 2)) & (treat["level"] != NO_LEVEL)
        st["last_spine_sbrt_on"] = ("d", _group_max(to, treat["day"], n, sbrt))
        last, _ = _last(to, n, treat["modality"] == _SEPARATION)
        st["separation_surgery_on"] = ("d", _pick(treat["day"], last, NULL_DAY))
        st["separation_margin_mm"] = ("f?", _pick(treat["margin"], last, np.nan))
        st["on_cancer_therapy"] = ("b", _group_any(to, (treat["kind"] == _SYSTEMIC) & (treat["end"] == NULL_DAY), n))

        st["sre_count"] = ("i", np.bincount(events["owner"], minlength=n))
        st["last_sre_on"] = ("d", _group_max(events["owner"], events["day"], n))

        co = locomo["owner"]
        active_condition = locomo["resolved"] == NULL_DAY
        bits = np.zeros(n, dtype=np.int64)
        np.bitwise_or.at(bits, co[active_condition], np.int64(1) << (locomo["type"][active_condition] - 1))
        st["locomo_types"] = ("i", bits)
        st["locomo_type2_without_plan"] = ("b", _group_any(co, active_condition & (locomo["type"] == 2)
                                                           & (locomo["plan"] == 0), n))
        st["locomo_type3_last_review_on"] = ("d", _group_max(co, locomo["review"], n,
                                                             active_condition & (locomo["type"] == 3)))
        st["board_decided_on"] = ("d", _group_max(board["owner"], board["decided"], n))

        state: list[Column] = [("patient_id", "i", pid)]
        for name in STATE_COLUMNS:
            kind_, data = st[name]
            state.append((name, kind_, data))
        return _Block(n, tables, state)




# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------


class _Objects:
    """Turns typed numpy columns into the Python objects a driver binds fastest.

    For SQLite, NULL travels as ``''`` into ``NULLIF(?, '')`` and booleans as
    0/1 (exactly what SQLAlchemy stores for a boolean there): Python's
    ``sqlite3`` binds exact ``int``/``float``/``str`` directly but sends
    ``None`` and ``bool`` through its adapter lookup, measured at ~0.5 µs per
    value, which made a 57-column ``patient_state`` row cost two to three times
    as much.  No generated value is ``''``.  For PostgreSQL's ``COPY``, ``None``
    and ``bool`` are native.
    """

    def __init__(self, today_d: int, sqlite: bool):
        self.sqlite = sqlite
        self.null: Any = "" if sqlite else None
        self.base = today_d - 40_000
        days = np.arange(self.base, today_d + 1).astype("datetime64[D]").astype(str)
        self.dates = _lut([*days.tolist(), self.null])
        self.tri = _lut([self.null, 0, 1]) if sqlite else TRI

    @staticmethod
    def nulls(kind: str, data: Any) -> np.ndarray | None:
        """Which rows of a column are NULL (``None`` when the kind cannot be NULL)."""
        if kind == "c":
            codes, vocab = data
            return np.isin(codes, vocab.null_codes) if vocab.has_null else None
        if kind == "d":
            return data == NULL_DAY
        if kind == "t":
            return data < 0
        if kind in ("i?", "f?"):
            return np.isnan(data)
        return None

    def column(self, kind: str, data: Any, offsets: dict[str, int]) -> Any:
        if kind in ("i", "f", "o"):
            return data
        if kind == "r":
            table, local = data
            return local + offsets[table]
        if kind == "b":
            return data.astype(np.int64) if self.sqlite else data
        if kind == "c":
            codes, vocab = data
            return (vocab.for_sqlite if self.sqlite else vocab.values)[codes]
        if kind == "d":
            index = np.where(data == NULL_DAY, len(self.dates) - 1, data - self.base)
            if len(index) and index.min() < 0:
                raise ValueError("a generated date lies before the supported range")
            return self.dates[index]
        if kind == "t":
            return self.tri[data.astype(np.int64) + 1]
        if kind in ("i?", "f?"):
            known = ~np.isnan(data)
            out = (np.where(known, data, 0).astype(np.int64) if kind == "i?" else data).astype(object)
            out[~known] = self.null
            return out
        raise ValueError(kind)

    def matrix(self, rows: int, columns: list[Column], offsets: dict[str, int], extra: Sequence[Any] = ()) -> np.ndarray:
        out = np.empty((rows, len(columns) + len(extra)), dtype=object)
        for j, (_, kind, data) in enumerate(columns):
            out[:, j] = self.column(kind, data, offsets)
        for j, value in enumerate(extra, start=len(columns)):
            out[:, j] = value
        return out


#: Columns every generated row of a table gets as constants: (column, value); "@ts" is the load timestamp.
_CONSTANTS: dict[str, tuple[tuple[str, Any], ...]] = {
    "patient": (("source_system", "demo"), ("source_id", None), ("created_at", "@ts"), ("updated_at", "@ts"),
                ("version", 1)),
    "spinal_lesion": (("version", 1),),
    "lesion_assessment": (("created_at", "@ts"),),
    "imaging_study": (("source_id", None), ("created_at", "@ts")),
    "performance_status": (("source_id", None), ("created_at", "@ts")),
    "neuro_status": (("created_at", "@ts"),),
    "lab_result": (("source_id", None), ("created_at", "@ts")),
    "metastatic_status": (("created_at", "@ts"),),
    "bma_administration": (("source_id", None), ("created_at", "@ts")),
    "dental_exam": (("created_at", "@ts"),),
    "treatment": (("source_id", None), ("created_at", "@ts")),
    "skeletal_event": (("source_id", None), ("created_at", "@ts")),
    "locomo_condition": (("created_at", "@ts"),),
    "board_case": (("created_at", "@ts"), ("version", 1)),
    "patient_state": (("updated_at", "@ts"),),
}


class _Writer:
    """Bulk-writes blocks on one connection inside one transaction."""

    def __init__(self, conn, objects: _Objects, timestamp: datetime):
        self.conn = conn
        self.objects = objects
        self.sqlite = conn.dialect.name == "sqlite"
        self.raw = conn.connection.dbapi_connection
        if self.sqlite:
            processor = sa.DateTime().dialect_impl(sqlite_dialect.dialect()).bind_processor(sqlite_dialect.dialect())
            self.timestamp: Any = processor(timestamp.astimezone(timezone.utc))
        else:
            self.timestamp = timestamp

    def _const(self, value: Any) -> Any:
        return self.timestamp if value == "@ts" else value

    def _literal(self, value: Any) -> str:
        """A trusted constant (generated, never user input) as SQL text."""
        value = self._const(value)
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return str(int(value))

    def prepare(self, table: str, rows: int, columns: list[Column], offsets: dict[str, int]) -> _Batch:
        """The statements that insert these rows."""
        constants = _CONSTANTS.get(table, ())
        names = [c[0] for c in columns]
        if rows == 0:
            return _Batch(table, 0, [])
        if self.sqlite:
            return _Batch(table, rows, self._sqlite_statements(table, rows, columns, offsets, constants))
        matrix = self.objects.matrix(rows, columns, offsets, [self._const(v) for _, v in constants])
        copy = f"COPY {table} ({', '.join(names + [c for c, _ in constants])}) FROM STDIN"
        return _Batch(table, rows, [(copy, matrix.tolist())])

    def _sqlite_statements(self, table: str, rows: int, columns: list[Column], offsets: dict[str, int],
                           constants: Sequence[tuple[str, Any]]) -> list[tuple[str, list]]:
        """Multi-row INSERTs that bind as few values as possible.

        * The integer primary key is left to SQLite, which gives each row
          max(rowid) + 1 — the id the block computed, since the load starts
          after MAX(id) and inserts in id order (``generate_demo`` checks).
          That saves a bound value and a uniqueness seek per row.
        * A coded column that is constant over long runs (lab results come
          grouped by test, so test, LOINC and unit) is written as a literal,
          one statement per run.
        * In each run, a column without NULLs binds plainly, a column of NULLs
          is a literal, the others go through ``NULLIF(?, '')``.
        """
        if columns[0][0] == _ROWID.get(table, "id"):
            columns = columns[1:]
        runs = [i for i, (_, kind, data) in enumerate(columns)
                if kind == "c" and np.count_nonzero(np.diff(data[0])) < _MAX_LITERAL_RUNS]
        cuts = {0, rows}
        for i in runs:
            cuts.update((np.flatnonzero(np.diff(columns[i][2][0])) + 1).tolist())
        bounds = sorted(cuts)
        statements = []
        tail = [self._literal(v) for _, v in constants]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            bound, marks, names, literals = [], [], [], []
            for i, (name, kind, data) in enumerate(columns):
                if i in runs:
                    literals.append((name, self._literal(data[1].values[data[0][lo]])))
                    continue
                part = _slice(kind, data, lo, hi)
                nulls = self.objects.nulls(kind, part)
                if nulls is not None and nulls.all():
                    literals.append((name, "NULL"))
                    continue
                bound.append((name, kind, part))
                names.append(name)
                marks.append("NULLIF(?, '')" if nulls is not None and nulls.any() else "?")
            count, k = hi - lo, len(bound)
            matrix = self.objects.matrix(count, bound, offsets)
            one = "(" + ", ".join(marks + [v for _, v in literals] + tail) + ")"
            head = (f"INSERT INTO {table} ({', '.join(names + [n for n, _ in literals] + [c for c, _ in constants])}) "
                    "VALUES ")
            per = _ROWS_PER_STATEMENT
            full = count // per * per
            if full:
                statements.append((head + ", ".join([one] * per), matrix[:full].reshape(-1, per * k).tolist()))
            if full < count:
                statements.append((head + one, matrix[full:].tolist()))
        return statements

    def execute(self, batch: _Batch) -> int:
        if self.sqlite:
            cursor = self.raw.cursor()
            try:
                for statement, params in batch.statements:
                    cursor.executemany(statement, params)
            finally:
                cursor.close()
        else:
            with self.raw.cursor() as cursor:
                for statement, rows in batch.statements:
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row(row)
        return batch.rows


_ROWID = {"patient_state": "patient_id"}  # the INTEGER PRIMARY KEY of each table (default "id")
_MAX_LITERAL_RUNS = 16


def _slice(kind: str, data: Any, lo: int, hi: int) -> Any:
    if kind == "c":
        return data[0][lo:hi], data[1]
    if kind == "r":
        return data[0], data[1][lo:hi]
    return data[lo:hi]


@dataclass
class _Batch:
    table: str
    rows: int
    statements: list[tuple[str, list]]  # (SQL, parameter rows); COPY statement and its rows on PostgreSQL
    patients_done: int = 0  # set on the last batch of a block


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


class _Pipeline:
    """The insert batches of every block, in order; the blocks made inline or by a producer thread.

    Making a block is numpy work that runs mostly without the GIL, so a
    producer thread can make the next block on the second core while this
    thread turns the current one into parameter rows and writes them.  Only
    the numpy part moves: parameter rows are Python objects, and building them
    in the producer made the writer wait for the GIL (measured slower).  A
    thread rather than a process: ``spawn`` re-imports the caller's main script
    and ``fork`` is unsafe in a process that runs threads.  At most three blocks
    exist at once, so memory stays flat.
    """

    def __init__(self, generator: _Generator, plan: list[tuple[int, int, int]], writer: _Writer,
                 offsets: dict[str, int], parallel: bool):
        self.generator = generator
        self.plan = plan
        self.writer = writer
        self.offsets = dict(offsets)
        self.parallel = parallel and len(plan) > 1
        self.waited = 0.0  # time the writer waited for blocks (all of the generation when inline)
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for args in self.plan:
                if not self._put(self.generator.block(*args)):
                    return
        except BaseException as err:  # handed to the writer, which re-raises it
            self._put(_Failure(err))

    def __enter__(self) -> _Pipeline:
        if self.parallel:
            self.thread = threading.Thread(target=self._produce, name="demo-producer", daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join()

    def _blocks(self) -> Iterator[_Block]:
        for args in self.plan:
            t0 = time.perf_counter()
            if self.thread is None:
                item = self.generator.block(*args)
            else:
                item = self.queue.get()
                if isinstance(item, _Failure):
                    raise item.error
            self.waited += time.perf_counter() - t0
            yield item

    def __iter__(self) -> Iterator[_Batch]:
        for block in self._blocks():
            batches = [(t, *block.tables[t]) for t in FACT_TABLES] + [("patient_state", block.n, block.state)]
            for position, (table, rows, columns) in enumerate(batches):
                batch = self.writer.prepare(table, rows, columns, self.offsets)
                if position == len(batches) - 1:
                    batch.patients_done = block.n
                yield batch
            for table in FACT_TABLES:
                self.offsets[table] += block.tables[table][0]


def _check_rowids(conn, rows: dict[str, int], first: dict[str, int]) -> None:
    """Every table's ids are exactly the block-computed ones (SQLite assigned them, each max(rowid) + 1)."""
    for table in FILLED_TABLES:
        key = _ROWID.get(table, "id")
        start = first["patient" if table == "patient_state" else table]
        # one aggregate per query, so SQLite answers each with a single seek
        low = bulk.fetchall(conn, f"SELECT MIN({key}) FROM {table} WHERE {key} >= ?", (start,))[0][0]
        high = bulk.fetchall(conn, f"SELECT MAX({key}) FROM {table}")[0][0]
        if rows[table] and (low, high) != (start, start + rows[table] - 1):
            raise RuntimeError(f"{table}: ids {low}..{high} are not the generated {start}..{start + rows[table] - 1}; "
                               "the load was rolled back")


def _secondary_indexes(conn, tables: Sequence[str]) -> list[tuple[str, str]]:
    """(name, CREATE statement) of the secondary indexes of ``tables``, as stored by the database."""
    names = ", ".join(f"'{t}'" for t in tables)
    if conn.dialect.name == "sqlite":
        return [tuple(r) for r in bulk.fetchall(
            conn, f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({names})"
            " ORDER BY name")]
    return [tuple(r) for r in bulk.fetchall(
        conn,
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
        f"AND i.tablename IN ({names}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
        "WHERE c.conindid = (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass) "
        "ORDER BY i.indexname")]


def _pg_foreign_keys(conn, tables: Sequence[str]) -> list[tuple[str, str, str]]:
    """(table, constraint, definition) of the foreign keys of ``tables`` (PostgreSQL)."""
    names = ", ".join(f"'{t}'" for t in tables)
    return [tuple(r) for r in bulk.fetchall(
        conn,
        "SELECT cl.relname, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = cl.relnamespace "
        f"WHERE c.contype = 'f' AND n.nspname = current_schema() AND cl.relname IN ({names}) ORDER BY 1, 2")]


def _insert_users(conn, timestamp: Any) -> dict[str, int]:
    existing = {r[0] for r in bulk.fetchall(conn, "SELECT username FROM app_user")}
    clash = sorted(existing & {u.username for u in DEMO_USERS})
    if clash:
        raise ValueError(f"the demo accounts already exist ({', '.join(clash)}): generate the demo into an empty database")
    hashes = {password: hash_password(password) for password in sorted({u.password for u in DEMO_USERS})}
    first = (bulk.fetchall(conn, "SELECT MAX(id) FROM app_user")[0][0] or 0) + 1
    columns = ["id", "username", "display_name", "role", "department", "password_hash", "active", "failed_logins",
               "password_changed_at", "created_at", "version"]
    rows = [(first + i, u.username, u.display_name, u.role, u.department, hashes[u.password], True, 0, timestamp,
             timestamp, 1) for i, u in enumerate(DEMO_USERS)]
    bulk.executemany(conn, bulk.insert_sql("app_user", columns), rows)
    return {u.username: first + i for i, u in enumerate(DEMO_USERS)}


@contextmanager
def _sqlite_load_settings(raw, stages: dict[str, float]) -> Iterator[None]:
    """Bulk-load settings on this SQLite connection only, restored afterwards.

    Durability is relaxed for the load (``synchronous=OFF``), foreign keys are
    not re-checked row by row (the generator's are valid by construction; the
    tests run ``PRAGMA foreign_key_check``) and the page cache gets 256 MB;
    ``generate_demo`` sets ``PRAGMA threads`` for the index builds, so their
    sorter may use the second core.  When no other connection has the file
    open, the load also leaves WAL for a rollback journal: a transaction into
    an empty database then writes each page once, instead of to the WAL and
    again at the checkpoint (3.2 GB at a million patients; measured 20 s), and a
    crash still rolls back to the empty database.  With other connections open
    the journal mode stays WAL and the WAL is truncated after the commit.
    """
    names = ("synchronous", "foreign_keys", "cache_size", "threads", "busy_timeout")
    before = {name: raw.execute(f"PRAGMA {name}").fetchone()[0] for name in names}
    journal = raw.execute("PRAGMA journal_mode").fetchone()[0]
    switched = False
    if journal == "wal":
        raw.execute("PRAGMA busy_timeout=0")  # never wait for other connections just to switch
        try:
            switched = raw.execute("PRAGMA journal_mode=TRUNCATE").fetchone()[0] == "truncate"
        except sqlite3.OperationalError:  # another connection has the database open
            switched = False
        raw.execute(f"PRAGMA busy_timeout={int(before['busy_timeout'])}")
    raw.execute("PRAGMA synchronous=OFF")
    raw.execute("PRAGMA foreign_keys=OFF")
    raw.execute("PRAGMA cache_size=-262144")
    try:
        yield
    finally:
        t0 = time.perf_counter()
        for name, value in before.items():
            raw.execute(f"PRAGMA {name}={int(value)}")
        if switched:
            raw.execute("PRAGMA journal_mode=WAL")
        elif journal == "wal":
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # do not leave a WAL as big as the data
        stages["journal"] = time.perf_counter() - t0


def generate_demo(
    engine: Engine,
    *,
    patients: int,
    seed: int = 7,
    today: date,
    progress: Callable[[str, int, int], None] | None = None,
    parallel: bool | None = None,
) -> DemoSummary:
    """Fill an empty, migrated database with the demo accounts and ``patients`` fictional patients.

    Raises ``ValueError`` when the database already holds patients (or the demo
    accounts).  All or nothing: one transaction.  ``progress(stage, done,
    total)`` is called per block of patients and per rebuilt index.
    ``parallel`` makes the blocks in a producer thread (the second core)
    while this thread writes; by default for four blocks or more.  The data
    are the same either way.
    """
    if patients < 0:
        raise ValueError("patients must be zero or more")
    started = time.perf_counter()
    stages: dict[str, float] = {}
    report = progress or (lambda stage, done, total: None)
    timestamp = datetime(today.year, today.month, today.day, tzinfo=timezone.utc)
    sqlite = is_sqlite(engine)
    rows = dict.fromkeys((*FILLED_TABLES, "app_user"), 0)
    objects = _Objects((today - date(1970, 1, 1)).days, sqlite)

    with writer(engine).connect() as conn:
        raw = conn.connection.dbapi_connection
        with _sqlite_load_settings(raw, stages) if sqlite else nullcontext():
            with conn.begin():
                if bulk.fetchall(conn, "SELECT COUNT(*) FROM patient")[0][0]:
                    raise ValueError("the database already holds patients: the demo is generated into an empty database")
                load = _Writer(conn, objects, timestamp)
                report("users", 0, len(DEMO_USERS))
                t0 = time.perf_counter()
                user_ids = _insert_users(conn, load.timestamp)
                rows["app_user"] = len(user_ids)
                stages["users"] = time.perf_counter() - t0
                report("users", len(DEMO_USERS), len(DEMO_USERS))

                t0 = time.perf_counter()
                indexes = _secondary_indexes(conn, FILLED_TABLES)
                for name, _ in indexes:
                    bulk.execute(conn, f"DROP INDEX {name}")
                foreign_keys = [] if sqlite else _pg_foreign_keys(conn, FILLED_TABLES)
                for table, name, _ in foreign_keys:
                    bulk.execute(conn, f"ALTER TABLE {table} DROP CONSTRAINT {name}")
                if not sqlite:
                    bulk.execute(conn, "SET LOCAL synchronous_commit = off")
                stages["drop_indexes"] = time.perf_counter() - t0

                offsets = {t: (bulk.fetchall(conn, f"SELECT MAX(id) FROM {t}")[0][0] or 0) + 1 for t in FACT_TABLES}
                nurses = [u for u in DEMO_USERS if u.role == "nurse"]
                spec = _GeneratorSpec(seed, today, tuple(user_ids[u.username] for u in nurses),
                                      tuple(DEPARTMENTS.index(u.department) for u in nurses))
                plan = [(index, offsets["patient"] + first, min(CHUNK, patients - first))
                        for index, first in enumerate(range(0, patients, CHUNK))]
                if parallel is None:
                    parallel = len(plan) >= 4 and (os.cpu_count() or 1) > 1
                t0 = time.perf_counter()
                done = 0
                report("patients", 0, patients)
                with _Pipeline(_Generator(spec), plan, load, offsets, parallel) as pipeline:
                    for batch in pipeline:
                        rows[batch.table] += load.execute(batch)
                        if batch.patients_done:
                            done += batch.patients_done
                            report("patients", done, patients)
                # the writer's wait for the producer (all of the generation when not parallel), and the rest
                stages["generate"] = pipeline.waited
                stages["write"] = time.perf_counter() - t0 - pipeline.waited
                if sqlite:
                    t1 = time.perf_counter()
                    _check_rowids(conn, rows, offsets)
                    stages["check_ids"] = time.perf_counter() - t1

                t0 = time.perf_counter()
                if sqlite:
                    raw.execute("PRAGMA threads=2")  # the index sorter may use the second core
                total = len(indexes) + len(foreign_keys)
                for i, (_name, create) in enumerate(indexes):
                    report("indexes", i, total)
                    bulk.execute(conn, create)
                for i, (table, name, definition) in enumerate(foreign_keys, start=len(indexes)):
                    report("indexes", i, total)
                    bulk.execute(conn, f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
                report("indexes", total, total)
                if not sqlite:  # explicit ids: move each sequence past them
                    for table in (*FACT_TABLES, "app_user"):
                        bulk.execute(conn, f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                           f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)")
                stages["indexes"] = time.perf_counter() - t0
                t_commit = time.perf_counter()
            stages["commit"] = time.perf_counter() - t_commit

    t0 = time.perf_counter()
    report("analyze", 0, 1)
    with writer(engine).connect() as conn:
        if sqlite:  # sampled statistics: fast at any size, and the planner needs them (perf.md)
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
            conn.exec_driver_sql("PRAGMA analysis_limit=0")
        else:
            conn.exec_driver_sql("ANALYZE")
        conn.commit()
    stages["analyze"] = time.perf_counter() - t0
    report("analyze", 1, 1)
    return DemoSummary(patients=patients, users=rows["app_user"], rows=rows, seconds=time.perf_counter() - started,
                       stage_seconds=stages)


__all__ = ["CHUNK", "DEMO_USERS", "DemoSummary", "DemoUser", "generate_demo"]
