"""Data gate: decides whether a landed batch may reach training (GX suites from the spec), quarantining it with a
readable report otherwise. May import the foundation only."""
