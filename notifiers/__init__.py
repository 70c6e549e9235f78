"""The notifiers: one module per chat service, each only the payload builder of its ``AlertProvider`` type.

Why this exists: the third plug-in family beside ``routers`` and ``metrics``.  A notifier is a module with a
pure ``build(message, target) -> dict`` (the ``base.Notifier`` protocol); ``base.send`` is the one sender
that posts any notifier's JSON and keeps the address secret.  ``NOTIFIERS`` maps the provider's ``type`` to
its module.  To add a service: write ``notifiers/<type>.py`` with ``build``, register it here, and add the
type to the ``AlertProviderType`` enum in ``apis/models/templates.py``.

What it must not do: import the engine (``canary``): a ``Message`` is plain data, and ``notifiers.alerts``
decides, from the Canary's spec alone, which of its alerts go to which notifier.
"""

from __future__ import annotations

from notifiers import base, discord, gchat, generic, msteams, rocket, slack

NOTIFIERS: dict[str, base.Notifier] = {
    "slack": slack,
    "rocket": rocket,
    "msteams": msteams,
    "discord": discord,
    "gchat": gchat,
    "generic": generic,
}
