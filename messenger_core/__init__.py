"""Messenger API core: a small Tornado platform whose features arrive as pluggy plugins.

Reading order for newcomers: ``hookspecs.py`` (what a plugin can contribute), then one plugin
under ``plugins/``, then ``app.py`` and ``web.py`` (how the contributions are assembled).
"""

__version__ = "0.1.0"
