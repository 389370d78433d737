"""Messenger API plugin ``messenger_throttle``."""
