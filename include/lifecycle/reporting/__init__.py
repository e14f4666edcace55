"""Reporting: the HTML lifecycle report of a model, built from the ledger, the registry and the monitor's output.
Decides nothing. May import the foundation and every stage; no stage imports it."""
