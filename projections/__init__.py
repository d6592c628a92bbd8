"""The read side: views of the ledger's events, kept up to date by one runner."""

from projections.models import ReadModels

__all__ = ["ReadModels"]
