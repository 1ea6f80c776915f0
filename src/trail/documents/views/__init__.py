"""The context each document kind needs, made from the plain-dict record it is rendered from.

A view is what a template sees as ``v``: every value already formatted for the document's
language and time zone (see :mod:`trail.documents.formatting`), labels looked up
(:mod:`trail.documents.labels`), ``None`` where something is not known yet.

- :func:`incident_view` — the reports to regulators and for the file (initial, follow-up,
  closing summary, post-incident review);
- :func:`notice_view` — notices to individuals and the public announcement: only what they may say;
- :func:`plan_view` — the graded emergency plan, from the playbook context.
"""

from trail.documents.views.incident import incident_view
from trail.documents.views.notice import notice_view
from trail.documents.views.plan import plan_view

__all__ = ["incident_view", "notice_view", "plan_view"]
