"""Messenger API plugin: the real-time stream (``GET /v1/events``); see ``hooks.py``."""
