"""fusionrec.plugins: the built-in plugins, each module one pluggy plugin named in ``DEFAULT_PLUGINS``.

Plugin modules stay light (parameter models and ``@hookimpl`` functions); heavy implementations are registered
as lazy ``"module:attribute"`` factories, so listing and validating never import torch or model libraries.
"""
