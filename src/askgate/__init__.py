"""askgate: a self-hosted, multi-user, ChatGPT-style API."""

__version__ = "0.1.0"
