"""The MLflow 3 registry as the lifecycle uses it: versions, lifecycle tags, aliases, artifact names. Decides
nothing; it records. May import the foundation only (training and every later stage import it)."""
