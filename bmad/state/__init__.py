"""Shared state for many processes: clients of the servers that hold it (Redis over RESP)."""
