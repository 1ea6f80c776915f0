"""Subject rights and compliance (DESIGN.md §11): what the trail answers a person and an auditor.

- :mod:`~trail.rights.subject_report` — one person's history, recipients and lookups (PIPL Art. 45);
- :mod:`~trail.rights.compliance` — the signed compliance report over a period and its offline check;
- :mod:`~trail.rights.render` — both reports as Markdown, HTML or PDF, in Chinese and English;
- :mod:`~trail.rights.citations` — the articles each section evidences.
"""
