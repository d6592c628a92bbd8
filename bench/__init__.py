"""Benchmarks of the ledger beside the baselines a user would compare it with."""
