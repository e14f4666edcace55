"""Serving and deployment: the gateway (routing by weight, prediction log, feedback, metrics), its client, the
canary judge, the deploy steps (start, step, promote, roll back) and SLO checks. Decides whether a challenger is
promoted or rolled back. May import the foundation, ``data``, ``registry`` and ``training``."""
