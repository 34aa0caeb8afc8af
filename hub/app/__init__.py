"""Processes and commands: the hub worker's runner, the ``haven`` CLI, the demo and local
services."""
