"""A minimal plugin: how small a Messenger API feature can be (see the README's plugin guide)."""
