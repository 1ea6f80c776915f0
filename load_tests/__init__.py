"""Load generators and benchmarks for trail (see load_tests/README.md)."""
