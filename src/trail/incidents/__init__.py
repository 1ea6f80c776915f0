"""Breach response: incidents, playbooks, documents and notices."""
