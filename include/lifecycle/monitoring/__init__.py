"""Monitoring: reads an interval of live traffic, measures drift (Evidently) and live performance, and decides by
policy whether to alert and retrain. May import the foundation and earlier stages (``data``, ``registry``,
``training``, ``serving``)."""
