"""Shared storage for many processes and replicas: a PostgreSQL client on the standard library."""
