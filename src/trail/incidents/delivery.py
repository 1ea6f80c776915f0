"""Notice delivery moved to :mod:`trail.notices`; ``mask_spec`` stays here for ``trail.config``."""

from trail.notices.channels import mask_spec

__all__ = ["mask_spec"]
