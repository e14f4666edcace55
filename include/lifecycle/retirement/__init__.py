"""Retirement: decides whether a version may retire, drains it, archives it with verified checksums, clears it from
the registry, and restores an archived version. May import the foundation and every earlier stage."""
