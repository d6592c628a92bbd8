"""The read side: views of the ledger's events, kept up to date by one runner."""
