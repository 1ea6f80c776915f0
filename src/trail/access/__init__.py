"""Who may read and change the trail, and the record of every such request (DESIGN.md §9).

- :mod:`roles` — the six roles and what each may do, written once as data;
- :mod:`principals` — people and services, their names (normalised, so look-alikes cannot be
  two principals) and the rules on combining roles;
- :mod:`tokens` — opaque bearer secrets, stored only as SHA-256 hashes;
- :mod:`store` — principals, tokens, legal holds and retention requests in the incident
  store's database (:mod:`sqlite` locally, :mod:`postgres` in production);
- :mod:`recorder` — the access-log audit event of every request, through the SDK;
- :mod:`retention` — retention as a two-admin action over the floor and the legal holds;
- :mod:`sql` — read-only SQL for analysts, checked with ClickHouse's own parser.
"""
