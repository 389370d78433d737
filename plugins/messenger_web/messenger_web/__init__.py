"""Messenger API plugin ``messenger_web``: a browser chat client over the public HTTP API.

``GET /`` serves the app's page; its ES modules, stylesheet and icon ship in ``static/`` and are
served by :mod:`messenger_web.handlers` under a path that names their content, with long-lived cache
headers and a strict content security policy.  The client talks only to the documented API.
"""
