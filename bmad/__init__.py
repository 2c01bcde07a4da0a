"""bmad-api: a self-hosted LLM gateway for BMAD-style agent workflows."""

__version__ = "2.0.0"
