"""Import data (admin): upload FHIR R4 JSON or CSV; the file is imported whole or not at all, with its report."""

import json

import streamlit as st

from dashboard.components.page import page_guard
from dashboard.data import imports as data
from surveillance.access import Action
from surveillance.exports import to_csv

identity, tr = page_guard(Action.IMPORT)
st.title(tr.t("import.title"))
st.caption(tr.t("import.intro"))

with st.form("import_form", clear_on_submit=False):
    upload = st.file_uploader(tr.t("import.file"), type=list(data.UPLOAD_TYPES))
    partial = st.checkbox(tr.t("import.partial"), value=False, help=tr.t("import.partial_help"))
    submitted = st.form_submit_button(tr.t("import.submit"), type="primary")

if submitted:
    if upload is None:
        st.error(tr.t("import.no_file"))
    else:
        content = upload.getvalue()
        problem = data.check_upload(upload.name, content)
        if problem:
            st.error(tr.t("import.refused", reason=problem))
        else:
            with st.spinner(tr.t("import.running")):
                result = data.run_import(identity, upload.name, content, partial=partial)
            message = tr.t(f"import.status_{result.status}", name=upload.name)
            {"imported": st.success, "unchanged": st.info, "partial": st.warning, "rejected": st.error}[result.status](
                message
            )
            st.caption(tr.t("import.sha", sha=result.file_sha256))
            if result.counts:
                st.table({k: [v] for k, v in sorted(result.counts.items())})
            frame = data.issues_frame(result)
            if not frame.empty:
                st.dataframe(frame, hide_index=True, width="stretch")
            report = json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str)
            cols = st.columns(2)
            # on_click="ignore": downloading does not rerun the page, so the report stays on screen
            cols[0].download_button(
                tr.t("import.download_json"),
                report,
                file_name=f"{upload.name}.report.json",
                mime="application/json",
                on_click="ignore",
            )
            cols[1].download_button(
                tr.t("import.download_csv"),
                to_csv(list(frame.columns), frame.values.tolist()),
                file_name=f"{upload.name}.report.csv",
                mime="text/csv",
                on_click="ignore",
            )

st.subheader(tr.t("import.templates"))
st.caption(tr.t("import.templates_intro", doc=data.FORMAT_DOC_NAME))
for kind, file_name, content in data.csv_templates():
    left, right = st.columns([2, 5], vertical_alignment="center")
    left.download_button(
        file_name,
        content,
        file_name=file_name,
        mime="text/csv",
        key=f"template_{kind}",
        icon=":material/download:",
        on_click="ignore",  # a report on screen stays
    )
    right.markdown(tr.t(f"import.template_{kind}"))
section = data.format_section()
with st.expander(tr.t("import.format", doc=data.FORMAT_DOC_NAME)):
    if section is None:
        st.info(tr.t("import.format_missing", doc=data.FORMAT_DOC_NAME))
    else:
        st.markdown(section)

st.subheader(tr.t("import.recent"))
batches = data.recent_batches(identity)
if batches.empty:
    st.info(tr.t("import.none"))
else:
    st.dataframe(batches, hide_index=True, width="stretch")
