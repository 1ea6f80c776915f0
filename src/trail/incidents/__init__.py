"""Breach response: incidents, their grading by the playbook, evidence, drills and the documents they file.

Documents are rendered by :mod:`trail.documents`; notices to the people affected are sent by
:mod:`trail.notices`, which sits above this package.
"""
