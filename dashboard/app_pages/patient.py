"""Patient: one record — scores with their reasoning, lesions, timeline, alerts — and the forms that add facts.

Which patient: ``st.session_state["patient_id"]`` (set by the caseload and
alerts pages), the ``?mrn=`` query parameter, or the search box.  Each is only
a request: ``dashboard.data.patient`` checks the scope on every read and
audits refusals.  Every fact is written through ``surveillance.service``,
which validates it, audits it and re-scores the patient, so after a save the
page reruns and shows the new scores and alerts at once.
"""

import re
from datetime import date

import streamlit as st

from dashboard.charts import patient_timeline_chart
from dashboard.components.alerts import alert_actions
from dashboard.components.exports import file_download
from dashboard.components.page import page_guard, rule_title
from dashboard.components.score_panel import locomo_panel, noms_text, score_panel, totals_text, value_text
from dashboard.data import patient as data
from dashboard.data.common import after_write, engine, now, today
from surveillance import break_glass, service
from surveillance.access import Action, PermissionDenied, allowed
from surveillance.importing.export import export_patient_file
from surveillance.labs import LABS, LabTest
from surveillance.locomo import CONDITION_TYPE, LocomoCondition
from surveillance.scoring.sre import SreType
from surveillance.scoring.vocab import (
    Alignment,
    Ambulation,
    BilskyGrade,
    Collapse,
    Frankel,
    LesionType,
    Level,
    Pain,
    Posterolateral,
    VisceralStatus,
)

SEARCH_KEY = "patient_search"
FLASH_KEY = "patient_form_flash"
SHOW_KEY = "patient_show_section"
VIEWED_KEY = "patient_viewed"
SEARCHED_KEY = "patient_searched"  # the last search audited: (query, ids listed)
BREAK_GLASS_KEY = "patient_break_glass_target"
SINS_FIELDS = (("pain", Pain), ("lesion_type", LesionType), ("alignment", Alignment), ("collapse", Collapse),
               ("posterolateral", Posterolateral), ("bilsky_escc", BilskyGrade))
LEVELS = [lv.value for lv in Level]

identity, tr = page_guard(Action.VIEW_PATIENT)
# A page's widgets are dropped from the session when another page runs, so a
# missing search box state means this run starts a new view of the page.
fresh_view = SEARCH_KEY not in st.session_state
today = today()


def label(key: str, fallback: str) -> str:
    try:
        return tr.t(key)
    except KeyError:
        return fallback


def vocab(group: str, value) -> str:
    """A stored code in the user's language; ``None`` is "unknown"."""
    if value is None or value == "":
        return tr.t("app.unknown")
    return label(f"forms.{group}.{value}", str(value))


def choice(group: str):
    return lambda value: vocab(group, value)


def tristate(value) -> str:
    return tr.t("app.unknown") if value is None else tr.t("scores.yes") if value else tr.t("scores.no")


# ---------------------------------------------------------------------------
# Which patient
# ---------------------------------------------------------------------------

st.title(tr.t("patient.title"))
refused = False
requested_mrn = st.query_params.get("mrn")
if requested_mrn is not None:
    del st.query_params["mrn"]  # consumed: keeps the identifier out of later URLs
    resolved = data.resolve_mrn(identity, requested_mrn)
    if resolved is None:
        refused = True
        st.session_state.pop("patient_id", None)
    else:
        st.session_state["patient_id"] = resolved

with st.expander(tr.t("patient.find"), expanded=st.session_state.get("patient_id") is None):
    query = st.text_input(tr.t("patient.search"), key=SEARCH_KEY, placeholder=tr.t("patient.search_hint"))
    if query.strip():
        matches = data.search_patients(identity, query)
        listed = (query.strip(), tuple(int(i) for i in matches["id"]))
        if st.session_state.get(SEARCHED_KEY) != listed:  # once per search, not on every rerun
            data.record_search(identity, list(listed[1]))
            st.session_state[SEARCHED_KEY] = listed
        if matches.empty:
            st.caption(tr.t("patient.no_matches"))
            # Not in the user's scope: a clinician may ask for emergency access by this MRN (audited as refused first).
            if break_glass.eligible(identity) and st.button(tr.t("break_glass.title"), key="patient_search_break_glass"):
                found = data.resolve_mrn(identity, query)
                st.session_state.pop("patient_id", None)
                if found is None:
                    st.session_state[BREAK_GLASS_KEY] = {"mrn": query.strip()[:32]}
                else:
                    st.session_state["patient_id"] = found
                st.rerun()
        else:
            names = {int(r.id): f"{r.mrn} · {r.family_name} {r.given_name} · {tr.date(r.birth_date)}"
                     for r in matches.itertuples()}
            cols = st.columns([4, 1], vertical_alignment="bottom")
            picked = cols[0].selectbox(tr.t("patient.matches", n=len(names)), list(names), format_func=names.get,
                                       key="patient_search_pick")
            if len(names) >= data.SEARCH_LIMIT:
                st.caption(tr.t("patient.search_limited", n=data.SEARCH_LIMIT))
            if cols[1].button(tr.t("patient.open"), key="patient_search_open", type="primary"):
                st.session_state["patient_id"] = int(picked)
                st.rerun()



def emergency_access() -> None:
    """After a refusal: a clinician may open the record by stating a reason (break-glass; audited, time-boxed)."""
    if not break_glass.eligible(identity):
        return
    target = st.session_state.get(BREAK_GLASS_KEY) or {}
    policy = break_glass.load_policy()
    with st.form("break_glass"):
        st.subheader(tr.t("break_glass.title"))
        st.caption(tr.t("break_glass.explain", minutes=int(policy.duration.total_seconds() // 60)))
        mrn = st.text_input(tr.t("break_glass.mrn"), value=target.get("mrn") or "", key="break_glass_mrn")
        reason = st.text_area(tr.t("break_glass.reason"), key="break_glass_reason",
                              help=tr.t("break_glass.reason_help", n=policy.reason_min_length))
        submitted = st.form_submit_button(tr.t("break_glass.submit"), type="primary")
    if not submitted:
        return
    try:
        if mrn.strip():
            grant = data.request_emergency_access(identity, reason=reason, mrn=mrn)
        else:
            grant = data.request_emergency_access(identity, reason=reason, patient_id=target.get("patient_id"))
    except break_glass.BreakGlassError as err:
        st.error(tr.t("break_glass.refused", why=str(err)))
        return
    except LookupError:
        st.error(tr.t("break_glass.not_found"))
        return
    except PermissionDenied:
        st.error(tr.t("app.denied"))
        return
    st.session_state.pop(BREAK_GLASS_KEY, None)
    st.session_state["patient_id"] = grant.patient_id
    st.rerun()


def refuse() -> None:
    st.error(tr.t("patient.not_available"))
    emergency_access()
    st.stop()


if refused:
    st.session_state[BREAK_GLASS_KEY] = {"mrn": requested_mrn}
    refuse()
requested = st.session_state.get("patient_id")
if requested is None:
    if BREAK_GLASS_KEY in st.session_state:
        refuse()
    st.info(tr.t("patient.choose"))
    st.stop()
record = data.patient_record(identity, requested, via="session_state")
if record is None:
    st.session_state.pop("patient_id", None)
    st.session_state[BREAK_GLASS_KEY] = {"patient_id": requested}
    refuse()
st.session_state.pop(BREAK_GLASS_KEY, None)

patient = record["patient"]
pid = int(patient["id"])
emergency = record["break_glass"]
if emergency is not None:
    st.warning(tr.t("break_glass.banner", until=tr.datetime(emergency["expires_at"]), reason=emergency["reason"]),
               icon=":material/emergency:")
if fresh_view or st.session_state.get(VIEWED_KEY) != (pid, emergency and emergency["grant_id"]):
    data.record_view(identity, pid, break_glass_grant=emergency and emergency["grant_id"])
    st.session_state[VIEWED_KEY] = (pid, emergency and emergency["grant_id"])

# ---------------------------------------------------------------------------
# 1. Header
# ---------------------------------------------------------------------------


def age_text() -> str:
    born = patient["birth_date"]
    if born is None:
        return tr.t("app.unknown")
    until = patient["deceased_on"] or today
    years = until.year - born.year - ((until.month, until.day) < (born.month, born.day))
    return tr.t("patient.age_years", years=years, born=tr.date(born))


def primary_text() -> str:
    site = patient["primary_site"]
    text = vocab("site", site) if site else tr.t("app.unknown")
    if patient["primary_histology"]:
        text += f" · {patient['primary_histology']}"
    return text


def status_text() -> str:
    text = vocab("status", patient["status"])
    when = patient["deceased_on"] or patient["status_on"]
    return f"{text} ({tr.date(when)})" if when else text


st.header(f"{patient['family_name']} {patient['given_name']}")
facts = [
    ("patient.mrn", patient["mrn"]),
    ("patient.age", age_text()),
    ("patient.sex", vocab("sex", patient["sex"])),
    ("patient.primary", primary_text()),
    ("patient.status", status_text()),
    ("patient.nurse", patient["nurse_name"] or tr.t("patient.unassigned")),
    ("patient.department", patient["department"] or "—"),
    ("patient.registered", tr.date(patient["registered_on"])),
]
cols = st.columns(4)
for i, (fact, value) in enumerate(facts):
    cols[i % 4].markdown(f"**{tr.t(fact)}**  \n{value}")
# The record as FHIR R4: built and recorded as a disclosure on click; the user's own patients only (not under
# break-glass, which opens a record to read, not to take away); leads and admins never reach this page.
if emergency is None and allowed(identity, Action.EXPORT):
    fhir_name = re.sub(r"[^A-Za-z0-9_-]", "_", str(patient["mrn"]))[:40] or "patient"
    file_download(tr.t("patient.download_fhir"), lambda: export_patient_file(engine(), identity, pid, now=now())[0],
                  file_name=f"patient-{fhir_name}.fhir.json", mime="application/fhir+json", key="patient_download_fhir")
    st.caption(tr.t("patient.download_fhir_help"))

active = data.active_alerts(identity, pid)
snapshot = record["snapshot"]
if snapshot is None:
    st.warning(tr.t("patient.not_scored"))
else:
    st.caption(tr.t("patient.snapshot_as_of", when=tr.datetime(snapshot["computed_at"]), run=snapshot["run_id"]))
    status = [
        ("patient.tier", label(f"tier.{snapshot['tier']}", str(snapshot["tier"]))),
        ("patient.next_imaging", tr.date(snapshot["next_imaging_due"])),
        ("patient.next_bma", tr.date(snapshot["next_bma_due"])),
        ("patient.open_alert_count", tr.number(len(active))),
        ("patient.priority", tr.number(snapshot["priority"])),
    ]
    for column, (fact, value) in zip(st.columns(5), status, strict=True):
        column.markdown(f"{tr.t(fact)}  \n**{value}**")
if record["queued_at"] is not None:
    st.warning(tr.t("patient.stale", when=tr.datetime(record["queued_at"])))

# ---------------------------------------------------------------------------
# Active alerts at a glance (always shown, so a save shows its alerts at once)
# ---------------------------------------------------------------------------

BADGES = {"critical": ":red[●]", "high": ":orange[●]", "routine": ":blue[●]", "info": ":gray[●]"}


def alert_line(alert: dict) -> str:
    severity = label(f"severity.{alert['severity']}", alert["severity"])
    status = label(f"alerts.status_{alert['status']}", alert["status"])
    title = rule_title(tr, alert.get("rule_id"), alert["title"])
    return (f"{BADGES.get(alert['severity'], '●')} **{title}** — {severity} · {status} · "
            f"{tr.date(alert['opened_at'])}")


st.markdown(f"**{tr.t('patient.alerts')}**")
if active:
    st.markdown("  \n".join(alert_line(a) for a in active))
else:
    st.caption(tr.t("patient.no_active_alerts"))

lesions = record["lesions"]
scores = record["scores"]


def lesion_name(lesion: dict) -> str:
    return lesion["level"] + (f"–{lesion['level_span_end']}" if lesion["level_span_end"] else "")


# ---------------------------------------------------------------------------
# 2–4. Overview: scores, lesions, timeline
# ---------------------------------------------------------------------------


def overview() -> None:
    st.subheader(tr.t("patient.scores"))
    st.caption(tr.t("patient.scores_source"))
    if scores is None:
        st.error(tr.t("patient.score_error", error=record["score_error"]))
    else:
        score_panel(scores, tr)
    locomo_panel(record["state"].get("locomo_types"), tr)

    st.subheader(tr.t("patient.lesions"))
    if not lesions:
        st.info(tr.t("patient.no_lesions"))
    else:
        sins = (scores or {}).get("sins") or [{}] * len(lesions)
        noms = (scores or {}).get("noms") or [{}] * len(lesions)
        rows = []
        for lesion, s, n in zip(lesions, sins, noms, strict=False):
            category = s.get("category")
            flags = [(n.get("flag_meanings") or {}).get(f, f) for f in n.get("flags") or []]
            # The lesion's scores first, then the SINS components they come from: at a laptop's width
            # the scores are what must show without scrolling sideways.
            rows.append({
                tr.t("patient.col_level"): lesion_name(lesion),
                tr.t("patient.col_sins"): totals_text(s.get("possible_totals") or [], tr),
                tr.t("patient.col_sins_category"): tr.t(f"scores.sins_{category}") if category
                else tr.t("patient.undetermined"),
                tr.t("forms.field.bilsky_escc"): vocab("bilsky", lesion["bilsky_escc"]),
                tr.t("patient.col_noms"): noms_text(n, tr) if n else tr.t("app.unknown"),
                tr.t("patient.col_flags"): "; ".join(flags) or "—",
                tr.t("forms.field.pain"): vocab("pain", lesion["pain"]),
                tr.t("forms.field.lesion_type"): vocab("lesion_type", lesion["lesion_type"]),
                tr.t("forms.field.alignment"): vocab("alignment", lesion["alignment"]),
                tr.t("forms.field.collapse"): vocab("collapse", lesion["collapse"]),
                tr.t("forms.field.posterolateral"): vocab("posterolateral", lesion["posterolateral"]),
                tr.t("patient.col_assessed"): tr.date(lesion["assessed_on"]),
            })
        widths = {tr.t("patient.col_level"): 90, tr.t("patient.col_sins"): 130, tr.t("patient.col_sins_category"): 130,
                  tr.t("forms.field.bilsky_escc"): 190, tr.t("patient.col_noms"): 140, tr.t("patient.col_flags"): 200}
        st.dataframe(rows, hide_index=True, width="stretch", key="patient_lesions",
                     column_config={k: st.column_config.Column(width=w) for k, w in widths.items()})

    st.subheader(tr.t("timeline.title"))
    events = data.timeline(identity, pid)
    if events.empty:
        st.info(tr.t("timeline.empty"))
        return
    severities = ("critical", "high", "routine", "info")
    figure = patient_timeline_chart(events, today=today, labels={
        "title": tr.t("timeline.chart_title"), "x": tr.t("timeline.x"), "ecog_axis": tr.t("timeline.ecog_axis"),
        "events_axis": tr.t("timeline.events_axis"), "ecog": tr.t("timeline.ecog"), "imaging": tr.t("timeline.imaging"),
        "bma": tr.t("timeline.bma"), "sre": tr.t("timeline.sre"), "treatment": tr.t("timeline.treatment"),
        "alert": tr.t("timeline.alert"), "legend": tr.t("timeline.legend"),
        "severity": {s: tr.t(f"severity.{s}") for s in severities},
    })
    if tr.lang == "ja":  # month ticks as 2026年1月, not "Jan 2026"
        figure.update_xaxes(tickformat="%Y年%-m月")
    st.plotly_chart(figure, width="stretch", key="patient_timeline")
    st.caption(tr.t("timeline.caption", n=data.TIMELINE_LIMIT))


# ---------------------------------------------------------------------------
# 5. Alerts: the shared action panel
# ---------------------------------------------------------------------------


def alerts_section() -> None:
    st.caption(tr.t("patient.alerts_hint"))
    alert_actions(identity, pid, key="patient")


# ---------------------------------------------------------------------------
# 6. Forms
# ---------------------------------------------------------------------------


def key(form: str, name: str) -> str:
    """Widget keys carry a generation that a successful save bumps, so the saved form starts empty again."""
    return f"pf_{pid}_{form}_{st.session_state.get(f'pf_gen_{form}', 0)}_{name}"


def field_label(name: str, lesion_names: list[str]) -> str:
    match = re.fullmatch(r"lesions\[(\d+)\]\.(\w+)", name)
    if match:
        index = int(match[1])
        which = lesion_names[index] if index < len(lesion_names) else f"#{index + 1}"
        return f"{which} · {label(f'forms.field.{match[2]}', match[2])}"
    return label(f"forms.field.{name}", name)


def submit(form: str, write, lesion_names: list[str] | None = None) -> None:
    """Call a ``service.record_*`` writer; show its refusal next to the form, or save, refresh and rerun."""
    try:
        result = write()
    except service.ValidationError as err:
        st.error(tr.t("forms.invalid", field=field_label(err.field, lesion_names or []), problem=err.problem))
        return
    except service.ConflictError:
        after_write()
        st.warning(tr.t("app.conflict"))
        return
    except (service.ServiceError, PermissionDenied) as err:
        st.error(str(err))
        return
    after_write()
    st.session_state[f"pf_gen_{form}"] = st.session_state.get(f"pf_gen_{form}", 0) + 1
    st.session_state[FLASH_KEY] = {"form": form, "patient_id": pid, "warnings": list(result.warnings)}
    st.session_state[SHOW_KEY] = "overview"  # the rerun opens the new scores and alerts
    st.rerun()


def flash() -> None:
    """What the last save said: shown once, above the sections, after the rerun."""
    message = st.session_state.pop(FLASH_KEY, None)
    if message and message["patient_id"] == pid:
        st.success(tr.t("forms.saved", form=tr.t(f"forms.tab_{message['form']}")))
        for warning in message["warnings"]:
            st.warning(tr.t("forms.warning", text=warning))


def day_input(form: str, name: str, text: str, *, optional: bool = False):
    earliest = patient["birth_date"] or date(1900, 1, 1)
    return st.date_input(text, value=None if optional else today, min_value=earliest, max_value=today,
                         key=key(form, name), help=tr.t("forms.date_help"))


def pick(form: str, name: str, text: str, options: list, fmt, index: int = 0):
    return st.selectbox(text, options, index=index, format_func=fmt, key=key(form, name))


def yes_no_unknown(form: str, name: str, text: str):
    return pick(form, name, text, [None, True, False], tristate)


def form_ecog() -> None:
    with st.form("pf_ecog"):
        recorded_on = day_input("ecog", "day", tr.t("forms.field.recorded_on"))
        cols = st.columns(2)
        with cols[0]:
            ecog = pick("ecog", "ecog", tr.t("forms.field.ecog"), [None, 0, 1, 2, 3, 4],
                        lambda v: tr.t("app.unknown") if v is None else f"{v} — {tr.t(f'forms.ecog_grade.g{v}')}")
        with cols[1]:
            kps = pick("ecog", "kps", tr.t("forms.field.kps"), [None, *range(100, 0, -10)],
                       lambda v: tr.t("app.unknown") if v is None else f"{v} %")
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("ecog", lambda: service.record_performance_status(
            engine(), identity, pid, recorded_on=recorded_on, ecog=ecog, kps=kps, now=now()))


def form_neuro() -> None:
    with st.form("pf_neuro"):
        recorded_on = day_input("neuro", "day", tr.t("forms.field.recorded_on"))
        cols = st.columns(2)
        with cols[0]:
            frankel = pick("neuro", "frankel", tr.t("forms.field.frankel_grade"), [None, *[f.value for f in Frankel]],
                           choice("frankel"))
        with cols[1]:
            ambulation = pick("neuro", "ambulation", tr.t("forms.field.ambulatory_status"),
                              [None, *[a.value for a in Ambulation]], choice("ambulation"))
        new_deficit = st.checkbox(tr.t("forms.field.new_deficit"), key=key("neuro", "deficit"))
        cord_pain = st.checkbox(tr.t("forms.field.pain_suggests_cord_compression"), key=key("neuro", "cord"))
        spinal_pain = st.checkbox(tr.t("forms.field.new_spinal_pain"), key=key("neuro", "pain"))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("neuro", lambda: service.record_neuro_status(
            engine(), identity, pid, recorded_on=recorded_on, frankel_grade=frankel, ambulatory_status=ambulation,
            new_deficit=new_deficit, pain_suggests_cord_compression=cord_pain, new_spinal_pain=spinal_pain, now=now()))


def sins_inputs(form: str, prefix: str, current: dict) -> dict:
    """The five SINS components besides location (from the level) and the Bilsky grade; "unknown" allowed."""
    values = {}
    cols = st.columns(3)
    for i, (name, enum) in enumerate(SINS_FIELDS):
        options = [None, *[e.value for e in enum]]
        group = "bilsky" if name == "bilsky_escc" else name
        now_value = current.get(name)
        with cols[i % 3]:
            values[name] = pick(form, f"{prefix}_{name}", tr.t(f"forms.field.{name}"), options, choice(group),
                                options.index(now_value) if now_value in options else 0)
    return values


def form_imaging() -> None:
    st.caption(tr.t("forms.imaging_hint"))
    with st.form("pf_imaging"):
        cols = st.columns(3)
        with cols[0]:
            performed_on = day_input("imaging", "day", tr.t("forms.field.performed_on"))
        with cols[1]:
            modality = pick("imaging", "modality", tr.t("forms.field.modality"), list(service.IMAGING_MODALITIES),
                            choice("modality"))
        with cols[2]:
            region = pick("imaging", "region", tr.t("forms.field.region"), list(service.IMAGING_REGIONS),
                          choice("region"))
        findings_text = st.text_area(tr.t("forms.field.findings"), key=key("imaging", "findings"), max_chars=4000)
        existing = []
        for lesion in lesions:
            st.markdown(f"**{tr.t('forms.existing_lesion', level=lesion_name(lesion))}** · "
                        f"{tr.t('patient.col_assessed')}: {tr.date(lesion['assessed_on'])}")
            prefix = f"l{lesion['id']}v{lesion['version']}"
            reassessed = st.checkbox(tr.t("forms.reassessed"), key=key("imaging", f"{prefix}_on"))
            existing.append((lesion, reassessed, sins_inputs("imaging", prefix, lesion)))
        st.markdown(f"**{tr.t('forms.new_lesion')}**")
        cols = st.columns(2)
        with cols[0]:
            new_level = pick("imaging", "new_level", tr.t("forms.field.level"), [None, *LEVELS],
                             lambda v: tr.t("forms.no_new_lesion") if v is None else v)
        with cols[1]:
            new_end = pick("imaging", "new_end", tr.t("forms.field.level_span_end"), [None, *LEVELS],
                           lambda v: tr.t("forms.single_level") if v is None else v)
        new_values = sins_inputs("imaging", "new", {})
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        findings, names = [], []
        for lesion, reassessed, values in existing:
            if reassessed:
                findings.append(service.LesionFinding(lesion_id=lesion["id"], **values))
                names.append(lesion_name(lesion))
        if new_level is not None:
            findings.append(service.LesionFinding(level=new_level, level_span_end=new_end, **new_values))
            names.append(tr.t("forms.new_lesion"))
        elif new_end is not None or any(v is not None for v in new_values.values()):
            findings.append(service.LesionFinding(level=None, level_span_end=new_end, **new_values))
            names.append(tr.t("forms.new_lesion"))
        submit("imaging", lambda: service.record_imaging(
            engine(), identity, pid, performed_on=performed_on, modality=modality, region=region,
            findings=findings_text, lesions=findings, now=now()), names)


def form_bma() -> None:
    st.caption(tr.t("forms.bma_hint"))
    with st.form("pf_bma"):
        cols = st.columns(3)
        with cols[0]:
            given_on = day_input("bma", "day", tr.t("forms.field.given_on"))
        with cols[1]:
            agent = pick("bma", "agent", tr.t("forms.field.agent"), list(service.BMA_AGENTS), choice("agent"))
        with cols[2]:
            dose = st.number_input(tr.t("forms.field.dose_mg"), value=None, min_value=0.0, max_value=1000.0,
                                   step=1.0, key=key("bma", "dose"))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("bma", lambda: service.record_bma_dose(
            engine(), identity, pid, given_on=given_on, agent=agent, dose_mg=dose, now=now()))


def form_lab() -> None:
    test = st.selectbox(tr.t("forms.field.test"), [t.value for t in LabTest], format_func=choice("lab"),
                        key=f"pf_{pid}_lab_test")
    definition = LABS[LabTest(test)]
    units: list[str] = []
    for unit in (definition.unit, *definition.conversions):
        if unit.lower() not in {u.lower() for u in units}:
            units.append(unit)
    with st.form("pf_lab"):
        cols = st.columns(3)
        with cols[0]:
            collected_on = day_input("lab", "day", tr.t("forms.field.collected_on"))
        with cols[1]:
            lab_value = st.number_input(tr.t("forms.field.value"), value=None, min_value=0.0, step=0.1,
                                        format="%g", key=key("lab", f"{test}_value"))
        with cols[2]:
            unit = pick("lab", f"{test}_unit", tr.t("forms.field.unit"), units, str)
        st.caption(tr.t("forms.lab_plausible", low=f"{definition.plausible[0]:g}", high=f"{definition.plausible[1]:g}",
                        unit=definition.unit))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("lab", lambda: service.record_lab(
            engine(), identity, pid, collected_on=collected_on, test=test, value=lab_value, unit=unit, now=now()))


def form_sre() -> None:
    with st.form("pf_sre"):
        cols = st.columns(3)
        with cols[0]:
            occurred_on = day_input("sre", "day", tr.t("forms.field.occurred_on"))
        with cols[1]:
            event_type = pick("sre", "type", tr.t("forms.field.event_type"), [s.value for s in SreType], choice("sre"))
        with cols[2]:
            sre_level = pick("sre", "level", tr.t("forms.field.level"), [None, *LEVELS],
                             lambda v: tr.t("forms.not_spinal") if v is None else v)
        emergency = st.checkbox(tr.t("forms.field.emergency"), key=key("sre", "emergency"))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("sre", lambda: service.record_sre(
            engine(), identity, pid, occurred_on=occurred_on, event_type=event_type, level=sre_level,
            emergency=emergency, now=now()))


def form_treatment() -> None:
    options = [(kind, modality) for kind, modalities in service.TREATMENTS.items() for modality in modalities]
    with st.form("pf_treatment"):
        cols = st.columns(3)
        with cols[0]:
            treatment = pick("treatment", "what", tr.t("forms.field.modality"), options,
                             lambda v: f"{vocab('treatment_kind', v[0])}: {vocab('treatment', v[1])}")
        with cols[1]:
            started_on = day_input("treatment", "start", tr.t("forms.field.started_on"))
        with cols[2]:
            ended_on = day_input("treatment", "end", tr.t("forms.field.ended_on"), optional=True)
        cols = st.columns(4)
        with cols[0]:
            treatment_level = pick("treatment", "level", tr.t("forms.field.level"), [None, *LEVELS],
                                   lambda v: tr.t("forms.not_spinal") if v is None else v)
        with cols[1]:
            dose_gy = st.number_input(tr.t("forms.field.dose_gy"), value=None, min_value=0.0, max_value=100.0,
                                      step=0.5, key=key("treatment", "dose"))
        with cols[2]:
            fractions = st.number_input(tr.t("forms.field.fractions"), value=None, min_value=1, max_value=100, step=1,
                                        key=key("treatment", "fractions"))
        with cols[3]:
            margin = st.number_input(tr.t("forms.field.separation_margin_mm"), value=None, min_value=0.0,
                                     max_value=100.0, step=0.5, key=key("treatment", "margin"))
        treatment_emergency = st.checkbox(tr.t("forms.field.emergency"), key=key("treatment", "emergency"))
        st.caption(tr.t("forms.treatment_hint"))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("treatment", lambda: service.record_treatment(
            engine(), identity, pid, kind=treatment[0], modality=treatment[1], started_on=started_on,
            ended_on=ended_on, level=treatment_level, dose_gy=dose_gy, fractions=fractions,
            separation_margin_mm=margin, emergency=treatment_emergency, now=now()))


def form_metastatic() -> None:
    st.caption(tr.t("forms.metastatic_hint"))
    with st.form("pf_metastatic"):
        recorded_on = day_input("metastatic", "day", tr.t("forms.field.recorded_on"))
        cols = st.columns(3)
        with cols[0]:
            visceral = pick("metastatic", "visceral", tr.t("forms.field.visceral_status"),
                            [None, *[v.value for v in VisceralStatus]], choice("visceral"))
            treatable = yes_no_unknown("metastatic", "treatable", tr.t("forms.field.visceral_treatable"))
            removable = yes_no_unknown("metastatic", "removable", tr.t("forms.field.visceral_removable"))
        with cols[1]:
            brain = yes_no_unknown("metastatic", "brain", tr.t("forms.field.brain_metastases"))
            fracture = yes_no_unknown("metastatic", "fracture", tr.t("forms.field.extraspinal_pathological_fracture"))
        with cols[2]:
            extraspinal = st.number_input(tr.t("forms.field.extraspinal_bone_metastases"), value=None, min_value=0,
                                          max_value=500, step=1, key=key("metastatic", "extraspinal"))
            vertebral = st.number_input(tr.t("forms.field.vertebral_body_metastases"), value=None, min_value=1,
                                        max_value=30, step=1, key=key("metastatic", "vertebral"))
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("metastatic", lambda: service.record_metastatic_status(
            engine(), identity, pid, recorded_on=recorded_on, visceral_status=visceral, visceral_treatable=treatable,
            visceral_removable=removable, brain_metastases=brain, extraspinal_bone_metastases=extraspinal,
            vertebral_body_metastases=vertebral, extraspinal_pathological_fracture=fracture, now=now()))


def form_locomo() -> None:
    with st.form("pf_locomo"):
        cols = st.columns(2)
        with cols[0]:
            condition = pick("locomo", "condition", tr.t("forms.field.condition"), [c.value for c in LocomoCondition],
                             lambda v: f"{vocab('locomo', v)} ({tr.t('forms.locomo_type', type=CONDITION_TYPE[v])})")
            onset_on = day_input("locomo", "onset", tr.t("forms.field.onset_on"))
        with cols[1]:
            plan = st.text_input(tr.t("forms.field.management_plan"), key=key("locomo", "plan"), max_chars=256)
            review_on = day_input("locomo", "review", tr.t("forms.field.orthopaedic_review_on"), optional=True)
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("locomo", lambda: service.record_locomo_condition(
            engine(), identity, pid, condition=condition, onset_on=onset_on, management_plan=plan,
            orthopaedic_review_on=review_on, now=now()))


def form_dental() -> None:
    with st.form("pf_dental"):
        examined_on = day_input("dental", "day", tr.t("forms.field.examined_on"))
        onj = st.checkbox(tr.t("forms.field.onj_suspected"), key=key("dental", "onj"))
        dental_findings = st.text_area(tr.t("forms.field.findings"), key=key("dental", "findings"), max_chars=2000)
        saved = st.form_submit_button(tr.t("forms.save"), type="primary")
    if saved:
        submit("dental", lambda: service.record_dental_exam(
            engine(), identity, pid, examined_on=examined_on, onj_suspected=onj, findings=dental_findings, now=now()))


FORMS = {"ecog": form_ecog, "neuro": form_neuro, "imaging": form_imaging, "bma": form_bma, "lab": form_lab,
         "sre": form_sre, "treatment": form_treatment, "metastatic": form_metastatic, "locomo": form_locomo,
         "dental": form_dental}


def record_section() -> None:
    st.caption(tr.t("forms.subtitle"))
    tabs = st.tabs([tr.t(f"forms.tab_{name}") for name in FORMS], key=f"patient_form_tab_{tr.lang}",
                   on_change="rerun")
    for tab, render in zip(tabs, FORMS.values(), strict=True):
        if tab.open is not False:
            with tab:
                render()


# ---------------------------------------------------------------------------
# The sections: only the open one runs (tabs that track their state), so a
# rerun renders the header and one section, not ten forms and every alert's
# action widgets at once.
# ---------------------------------------------------------------------------

SECTIONS = {"overview": (tr.t("patient.tab_overview"), overview),
            "alerts": (tr.t("patient.tab_alerts"), alerts_section),
            "record": (tr.t("forms.title"), record_section)}
section_key = f"patient_section_{tr.lang}"
show = st.session_state.pop(SHOW_KEY, None)
if show in SECTIONS:
    st.session_state[section_key] = SECTIONS[show][0]
flash()
tabs = st.tabs([title for title, _ in SECTIONS.values()], key=section_key, on_change="rerun")
for tab, (_, render) in zip(tabs, SECTIONS.values(), strict=True):
    if tab.open is not False:
        with tab:
            render()

st.caption(tr.t("patient.facts_note", unknown=value_text(None, tr)))
