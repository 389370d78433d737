"""Messenger API plugin ``messenger_search``."""
