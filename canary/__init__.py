"""The release controller and the ``fledge`` command, in rooms by role.

Why this exists: this is where a Canary is released.  Each subpackage is one room, and a room imports only
the rooms below it: ``core`` (every release rule, pure), ``cluster`` (the link to the API server),
``objects`` (what Fledge owns), ``engine`` (one tick: observe, decide, execute), ``controller`` (the
process: kopf handlers and one loop per canary) and ``cli`` (the command and its client).

What it must not do: hold a module outside a room, let a room import a higher one or close an import
cycle, or be imported by ``apis/`` or the plug-in families (``routers``, ``metrics``, ``notifiers``), which
sit below it.  tests/unit/test_layout.py holds it to that.
"""
