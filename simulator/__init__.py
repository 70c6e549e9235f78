"""Fledge's traffic simulator: the stand-in data plane of the integration tests.

It reads the route weights the controller wrote into the API server (HTTPRoute, VirtualService,
canary Ingress or apex Service), generates synthetic traffic split by them, proxies real requests the
same way, and exports what Istio, ingress-nginx and an instrumented app would, for Prometheus to scrape.
A version's behaviour (error rate, latency) comes from its Deployment's pod template annotations.

Modules, in the order data flows:

    sources     RouteSource protocol; the API server reader and an in-memory one for tests
    routes      pure: manifests + request -> Split (which version serves, what is mirrored)
    traffic     pure: rates and shares -> whole request counts (deterministic carries), behaviour, latency
    apps        per-app state: registration, last observation, tallies; synthetic ticks and real answers
    telemetry   the metrics, in a private registry, with the real exporters' names and labels
    server      Simulator: HTTP endpoints, poll and tick threads
    cli         command line (python -m simulator, fledge simulator)

What this package must not do: write to the API server or be imported by the controller's core.
"""

from simulator.cli import main

__all__ = ["main"]
