"""Shared spine of the lab suite: flags, device and seed, run folders, early stopping, plots, sweeps."""
