"""HTTP API of the local stack."""
