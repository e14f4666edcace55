"""Operations tooling: starts and drives services for a person or a test (service processes, the supervisor,
the embedded and distributed topologies, Airflow's environment and REST client, the demo and its simulated
clients). May import anything in the core; nothing in the core imports it."""
