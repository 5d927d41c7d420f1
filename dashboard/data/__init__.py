"""Every read the pages make, and the only place with ``st.cache_*``.

A package rather than one ``data.py`` (a departure from design.md recorded in
docs/architecture.md): one module per question keeps each page's reads
reviewable.  Rules for every function here:

* it takes the signed-in :class:`~surveillance.access.Identity` and checks the
  role and the patient scope itself (``surveillance.access``), so a page that
  forgot a check still cannot leak data;
* cached results are keyed by the identity's scope (role, user id, department)
  and by the latest recompute run, never shared across scopes;
* it returns plain data (DataFrames, dicts), never ORM objects.
"""
