"""Judging transitions: the critic, the evaluation against baselines, plots of curves."""
