"""The HTTP API and the `vledger` command line."""
