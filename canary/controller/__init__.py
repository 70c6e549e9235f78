"""The controller process: kopf handlers, one loop per canary, the process's start-up and health.

Why this exists: ``process`` parses ``fledge controller``'s flags, builds the
engine's context and runs kopf with its settings applied once at start-up;
``handlers`` are the thin kopf handlers that turn watch events and leadership
into wake-ups; ``wakeups`` knows which canaries an event concerns; ``loops``
runs one task per canary that ticks it when woken or when its timer falls due.

What it must not do: hold a rule of the release or do a tick's I/O itself: a
handler only wakes a loop, and a loop calls ``canary.engine.tick``.  Nothing
below imports it; only ``canary.cli`` names it (lazily, by module name).
"""
