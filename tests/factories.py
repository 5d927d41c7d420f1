"""Small, seeded, varied patients for database tests (through the ORM, as the service stores them).

Not the demo generator: this one is deliberately simple and independent of it,
so the pipeline tests do not depend on the generator's choices.
"""

from __future__ import annotations

import random
from datetime import date, timedelta

from db import models as m
from db.engine import write_session
from surveillance.auth import hash_password
from surveillance.state import refresh_patient_state

SITES = [
    "breast",
    "prostate",
    "lung_nsclc",
    "lung_sclc",
    "kidney",
    "liver",
    "colon",
    "rectum",
    "myeloma",
    "melanoma",
    "thyroid",
    "unknown_primary",
    "cervix",
    "pancreas",
    None,
]
LEVELS = ["C3", "C7", "T2", "T4", "T8", "T11", "T12", "L1", "L2", "L4", "L5", "S1", "S3"]
PASSWORD = "factory-pass-123"


def maybe(rng: random.Random, value, p_unknown: float = 0.2):
    return None if rng.random() < p_unknown else value


def add_users(engine) -> dict[str, int]:
    ids = {}
    hashed = hash_password(PASSWORD)
    with write_session(engine) as session:
        for username, role, dept in [
            ("nurse1", "nurse", "oncology"),
            ("nurse2", "nurse", "oncology"),
            ("doc1", "physician", "oncology"),
            ("doc2", "physician", "orthopaedics"),
            ("lead1", "lead", None),
            ("admin1", "admin", None),
        ]:
            user = m.AppUser(
                username=username, display_name=username.title(), role=role, department=dept, password_hash=hashed
            )
            session.add(user)
            session.flush()
            ids[username] = user.id
    return ids


def add_patients(engine, n: int, *, seed: int = 1, today: date = date(2026, 11, 27), nurse_ids=()) -> list[int]:
    rng = random.Random(seed)
    ids = []
    with write_session(engine) as session:
        for i in range(n):
            site = rng.choice(SITES)
            registered = today - timedelta(days=rng.randint(30, 1500))
            patient = m.Patient(
                mrn=f"F{seed:02d}{i:05d}",
                family_name=f"Family{i}",
                given_name=f"Given{i}",
                birth_date=date(1940 + rng.randint(0, 45), rng.randint(1, 12), rng.randint(1, 28)),
                sex=rng.choice(["F", "M"]),
                department=rng.choice(["oncology", "orthopaedics"]),
                primary_site=site,
                primary_histology=None if site else rng.choice(["肺腺癌", "renal cell carcinoma", None]),
                hormone_dependent=maybe(rng, rng.random() < 0.7),
                molecular_targeted_therapy=maybe(rng, rng.random() < 0.3),
                previous_chemotherapy=maybe(rng, rng.random() < 0.5),
                fit_for_surgery=maybe(rng, rng.random() < 0.7),
                status=rng.choices(["active", "deceased", "transferred", "on_hold"], [85, 9, 3, 3])[0],
                registered_on=registered,
                assigned_nurse_id=rng.choice(list(nurse_ids)) if nurse_ids and rng.random() < 0.9 else None,
                zoledronic_regimen=rng.choice(["q4w", "q12w", None]),
            )
            session.add(patient)
            session.flush()
            pid = patient.id
            ids.append(pid)
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                level = rng.choice(LEVELS)
                seen = registered + timedelta(days=rng.randint(0, 200))
                span_end = None
                if rng.random() < 0.15 and level not in ("S3",):
                    index = [
                        "Occiput",
                        "C1",
                        "C2",
                        "C3",
                        "C4",
                        "C5",
                        "C6",
                        "C7",
                        "T1",
                        "T2",
                        "T3",
                        "T4",
                        "T5",
                        "T6",
                        "T7",
                        "T8",
                        "T9",
                        "T10",
                        "T11",
                        "T12",
                        "L1",
                        "L2",
                        "L3",
                        "L4",
                        "L5",
                        "S1",
                        "S2",
                        "S3",
                        "S4",
                        "S5",
                    ]
                    span_end = index[index.index(level) + 1]
                components = dict(
                    pain=maybe(rng, rng.choice(["mechanical", "non_mechanical", "none"])),
                    lesion_type=maybe(rng, rng.choice(["lytic", "mixed", "blastic"]), 0.1),
                    alignment=maybe(rng, rng.choice(["normal", "normal", "deformity", "subluxation"]), 0.1),
                    collapse=maybe(rng, rng.choice(["none", "none_gt50_involved", "lt50", "gt50"]), 0.1),
                    posterolateral=maybe(rng, rng.choice(["none", "unilateral", "bilateral"]), 0.1),
                    bilsky_escc=maybe(rng, rng.choice(["0", "1a", "1b", "1c", "2", "3"]), 0.15),
                )
                lesion = m.SpinalLesion(
                    patient_id=pid,
                    level=level,
                    level_span_end=span_end,
                    first_seen_on=seen,
                    assessed_on=seen,
                    active=rng.random() < 0.95,
                    **components,
                )
                session.add(lesion)
                session.flush()
                session.add(m.LesionAssessment(lesion_id=lesion.id, patient_id=pid, assessed_on=seen, **components))
            ecog = rng.randint(0, 2)
            for k in range(rng.randint(0, 4)):
                ecog = min(4, max(0, ecog + rng.choice([-1, 0, 0, 1])))
                session.add(
                    m.PerformanceStatus(
                        patient_id=pid,
                        recorded_on=registered + timedelta(days=60 * k + 5),
                        ecog=ecog,
                        kps=maybe(rng, [90, 70, 60, 40, 20][ecog], 0.5),
                    )
                )
            if rng.random() < 0.5:
                session.add(
                    m.NeuroStatus(
                        patient_id=pid,
                        recorded_on=today - timedelta(days=rng.randint(1, 200)),
                        frankel_grade=rng.choice("CDEEE"),
                        ambulatory_status=rng.choice(["independent", "with_aid", "with_assistance"]),
                        new_deficit=rng.random() < 0.05,
                        new_spinal_pain=rng.random() < 0.05,
                    )
                )
            if rng.random() < 0.85:
                session.add(
                    m.MetastaticStatus(
                        patient_id=pid,
                        recorded_on=registered,
                        visceral_status=maybe(rng, rng.choice(["none", "none", "nodular", "disseminated"])),
                        visceral_treatable=maybe(rng, rng.random() < 0.5),
                        visceral_removable=maybe(rng, rng.random() < 0.3),
                        brain_metastases=maybe(rng, rng.random() < 0.1),
                        extraspinal_bone_metastases=maybe(rng, rng.randint(0, 5)),
                        extraspinal_pathological_fracture=maybe(rng, rng.random() < 0.1),
                    )
                )
            for test, value in [
                ("albumin", rng.uniform(2.8, 4.6)),
                ("crp", rng.uniform(0, 2)),
                ("ldh", rng.uniform(150, 400)),
                ("platelets", rng.uniform(80_000, 400_000)),
                ("calcium", rng.uniform(7.6, 11)),
                ("bilirubin", rng.uniform(0.2, 2)),
                ("creatinine", rng.uniform(0.6, 2.2)),
            ]:
                if rng.random() < 0.8:
                    session.add(
                        m.LabResult(
                            patient_id=pid,
                            collected_on=today - timedelta(days=rng.randint(1, 120)),
                            test=test,
                            value=round(value, 2),
                            unit="x",
                        )
                    )
            for k in range(rng.randint(0, 3)):
                session.add(
                    m.ImagingStudy(
                        patient_id=pid,
                        performed_on=registered + timedelta(days=90 * k),
                        modality=rng.choice(["mri", "ct", "bone_scan"]),
                        region="whole_spine",
                    )
                )
            if rng.random() < 0.6:
                agent = rng.choice(["denosumab", "zoledronic_acid"])
                start = registered + timedelta(days=20)
                for k in range(rng.randint(1, 6)):
                    given = start + timedelta(days=28 * k)
                    if given <= today:
                        session.add(
                            m.BmaAdministration(
                                patient_id=pid, given_on=given, agent=agent, dose_mg=120 if agent == "denosumab" else 4
                            )
                        )
            if rng.random() < 0.3:
                session.add(m.DentalExam(patient_id=pid, examined_on=registered + timedelta(days=rng.randint(0, 60))))
            if rng.random() < 0.2:
                session.add(
                    m.SkeletalEvent(
                        patient_id=pid,
                        occurred_on=today - timedelta(days=rng.randint(1, 700)),
                        event_type=rng.choice(
                            [
                                "pathological_fracture_vertebral",
                                "radiation_to_bone",
                                "spinal_cord_compression",
                                "surgery_to_bone",
                            ]
                        ),
                        emergency=rng.random() < 0.3,
                    )
                )
            if rng.random() < 0.15:
                session.add(
                    m.Treatment(
                        patient_id=pid,
                        kind="radiotherapy",
                        modality="sbrt",
                        level=rng.choice(LEVELS),
                        started_on=today - timedelta(days=rng.randint(10, 400)),
                        dose_gy=24,
                        fractions=2,
                    )
                )
            if rng.random() < 0.3:
                session.add(
                    m.Treatment(
                        patient_id=pid,
                        kind="systemic",
                        modality="chemotherapy",
                        started_on=registered + timedelta(days=10),
                    )
                )
            if rng.random() < 0.2:
                session.add(
                    m.LocomoConditionRecord(
                        patient_id=pid,
                        condition=rng.choice(
                            ["secondary_osteoporosis", "osteoarthritis", "lymphoedema", "lumbar_spinal_canal_stenosis"]
                        ),
                        onset_on=registered,
                    )
                )
        session.flush()
        refresh_patient_state(session, ids)
        session.add_all(m.RecomputeQueue(patient_id=pid) for pid in ids)
    return ids
