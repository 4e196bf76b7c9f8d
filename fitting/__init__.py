"""Curves fitted from recorded mixes: alignment, the fit, its check against known curves."""
