"""The controller's link to the API server: transport, reads and writes, watch caches, the Lease.

Why this exists: every byte Fledge exchanges with the API server goes through
here, so how it talks (``transport``: the asynchronous client, TLS, retries),
what it reads (``watchcache``: the store every tick reads from; ``informers``:
the LIST-then-WATCH loops that fill it), how it writes (``kube``: the writer and
its API errors) and whether it may write (``leader``: the Lease) are in one
place.  ``telemetry`` holds the process's own Prometheus metrics, which the
client counts its requests into.

What it must not do: know what a Canary means.  Nothing here decides a release
or builds an owned object; it imports ``apis`` and the standard library, never
``canary.core`` rules or a higher subpackage (``objects``, ``engine`` and up).
"""
