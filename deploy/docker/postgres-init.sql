-- Rendered from deploy/topology.yaml by `python -m accord.deploy_files --write`.
-- One database per stateful service, owned by the accord role the official image creates.
CREATE DATABASE gateway OWNER accord;
CREATE DATABASE registry OWNER accord;
CREATE DATABASE orchestrator OWNER accord;
