"""Integrity: Merkle trees, signed checkpoints, verification, retention records, proofs."""
