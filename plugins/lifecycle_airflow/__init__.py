"""Airflow glue for the lifecycle core: operators, notifiers and DAG factories' shared pieces.

Importable as a package (``plugins/`` is on Airflow's sys.path and the project is installed editable);
``plugins/.airflowignore`` keeps Airflow's plugin loader from executing these modules one by one.
"""
