"""Streaming detection (MIIT Order 24 Art. 13(3), 13(5); Shenzhen Art. 18-20, 22, 82, 83).

rules.py       the rules' configuration, defaults, articles, the TOML rules file
engine.py      pure: validated wire events in, alerts out (event time, bounded lateness)
alerts.py      the Alert and its deterministic id
consumer.py    the detector: trail.events -> engine -> trail.alerts, checkpoints
alert_sink.py  trail.alerts -> the alerts table
review.py      the review queue (ack, dismiss), each review an audit event
runtime.py     both consumers in threads (trail up) or one per process (consumers/)
"""
