"""Messenger API plugin ``messenger_chats``."""
