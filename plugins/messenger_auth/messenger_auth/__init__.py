"""Messenger API plugin ``messenger_auth``."""
