"""The controller's link to the API server: transport, reads and writes, watch caches, the Lease.

Why this exists: every byte Fledge exchanges with the API server goes through
here, so how it talks (``transport``: the asynchronous client, TLS, retries),
what it reads (``watchcache``: the store every tick reads from; ``informers``:
the LIST-then-WATCH loops that fill it), how it writes (``kube``: the writer and
its API errors) and whether it may write (``leader``: the Lease) are in one
place.  ``telemetry`` holds the process's own Prometheus metrics: it sits here,
not in ``canary.controller``, because the client and the Lease count their
requests into it and the engine records each tick into it, and neither may
import the controller.

What it must not do: know what a Canary means.  Nothing here decides a release
or builds an owned object; of Fledge it imports only ``apis`` (besides the
standard library, its client libraries: aiohttp, yaml, prometheus_client),
never ``canary.core`` or a higher subpackage (``objects``, ``engine`` and up);
tests/unit/test_layout.py holds it to that.
"""
