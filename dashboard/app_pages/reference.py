"""Reference: every instrument of the registry with its own tables, the master histology table, and the rule set.

Everything shown is read from the code that scores and alerts — ``REGISTRY``
(each instrument's typed tables), ``master_histology_table()`` (derived from
them) and ``load_rules()`` (the validated rule file) — so the reference cannot
drift from what the product computes.
"""

import pandas as pd
import streamlit as st

from dashboard.components.page import page_guard
from surveillance.access import Action
from surveillance.rules import load_rules
from surveillance.scoring import REGISTRY, master_histology_table

SEVERITY_COLOURS = {"critical": "red", "high": "orange", "routine": "blue", "info": "gray"}

identity, tr = page_guard(Action.VIEW_REFERENCE)
st.title(tr.t("reference.title"))
st.caption(tr.t("reference.subtitle"))

query = (st.text_input(tr.t("reference.filter"), key="ref_filter", placeholder=tr.t("reference.filter_hint"))
         or "").strip().lower()


def matches(*values) -> bool:
    return not query or any(query in str(v).lower() for v in values)


def ref_table(title: str, columns, rows, *, everything: bool) -> bool:
    """Render a reference table (only its matching rows unless ``everything``); False when nothing matched."""
    rows = list(rows) if everything else [r for r in rows if matches(*r)]
    if not rows:
        return False
    st.markdown(f"**{title}**")
    st.table(pd.DataFrame(rows, columns=list(columns)).astype(str), hide_index=True)
    return True


instruments_tab, histology_tab, rules_tab = st.tabs(
    [tr.t("reference.tab_instruments"), tr.t("reference.tab_histology"), tr.t("reference.tab_rules")])

with instruments_tab:
    st.caption(tr.t("reference.evidence_tags"))
    shown = 0
    for instrument in REGISTRY:
        tables = instrument.reference_tables()
        meta = matches(instrument.id, instrument.name, instrument.kind, instrument.citation, instrument.table_version,
                       instrument.reference_section, instrument.summary)
        if not meta and not any(matches(table.title) or any(matches(*r) for r in table.rows) for table in tables):
            continue
        shown += 1
        label = f"{instrument.name} · `{instrument.id}` · {instrument.reference_section}"
        with st.expander(label, expanded=bool(query)):
            st.markdown(instrument.summary)
            st.markdown(tr.t("reference.meta", id=instrument.id, kind=tr.t(f"reference.kind_{instrument.kind}"),
                             section=instrument.reference_section, version=instrument.table_version))
            st.caption(tr.t("reference.citation", citation=instrument.citation))
            for table in tables:
                ref_table(table.title, table.columns, table.rows, everything=meta or matches(table.title))
            if not tables:
                st.caption(tr.t("reference.no_tables"))
    if not shown:
        st.info(tr.t("reference.no_match"))
    st.caption(tr.t("reference.clinical_reference"))

with histology_tab:
    master = master_histology_table()
    if not ref_table(master.title, master.columns, master.rows, everything=matches(master.title)):
        st.info(tr.t("reference.no_match"))
    st.caption(tr.t("reference.histology_note"))

with rules_tab:
    rules = load_rules()
    st.markdown(tr.t("reference.ruleset", id=rules.id, version=rules.version, digest=rules.digest[:12]))
    st.caption(rules.description)

    tiers = rules.tiers
    st.subheader(tr.t("reference.tiers"))
    tier_rows = [
        (tr.t("tier.high"), tiers.high_interval_days,
         tr.t("reference.tier_high", sins=tiers.high_sins_min, bilsky=tiers.high_bilsky_min,
              months=tiers.post_sbrt_high_months)),
        (tr.t("tier.intermediate"), tiers.intermediate_interval_days,
         tr.t("reference.tier_intermediate", sins=tiers.intermediate_sins_min, sins_high=tiers.high_sins_min - 1,
              months=tiers.new_lesion_months)),
        (tr.t("tier.low"), tiers.low_interval_days,
         tr.t("reference.tier_low", sins=tiers.intermediate_sins_min - 1)),
        (tr.t("tier.screening"), tiers.screening_interval_days,
         tr.t("reference.tier_screening", sites=", ".join(tiers.screening_sites))),
    ]
    columns = [tr.t("reference.col_tier"), tr.t("reference.col_interval_days"), tr.t("reference.col_criterion")]
    if not ref_table(tr.t("reference.tiers_table"), columns, tier_rows, everything=matches(tr.t("reference.tiers"))):
        st.caption(tr.t("reference.no_match"))
    st.caption(tr.t("reference.tiers_source", source=tiers.source))
    weights = [(tr.t(f"severity.{k}"), v) for k, v in rules.severity_weights.items()]
    ref_table(tr.t("reference.weights"), [tr.t("reference.col_severity"), tr.t("reference.col_weight")], weights,
              everything=True)

    st.subheader(tr.t("reference.rules"))
    st.caption(tr.t("reference.verify_note"))
    listed = 0
    for rule in rules.rules:
        params = "; ".join(f"{k} = {v}" for k, v in rule.params.items())
        if not matches(rule.id, rule.version, rule.severity, rule.who, rule.title, rule.action, rule.source, params,
                       "verify" if rule.verify else ""):
            continue
        listed += 1
        with st.container(border=True, key=f"ref_rule_{rule.id}"):
            colour = SEVERITY_COLOURS.get(rule.severity, "gray")
            badges = f":{colour}-badge[{tr.t(f'severity.{rule.severity}')}]"
            if rule.verify:
                badges += f" :yellow-badge[:material/warning: {tr.t('reference.verify')}]"
            st.markdown(f"**`{rule.id}`** · v{rule.version} · {badges}")
            st.markdown(f"**{rule.title}**")
            st.markdown(tr.t("reference.rule_body", who=rule.who, action=rule.action, source=rule.source))
            st.caption(tr.t("reference.params", params=params or "—"))
    if not listed:
        st.info(tr.t("reference.no_match"))
