"""kopf's handling of finalizers on the objects Fledge watches: it must touch no one's.

kopf removes its own finalizer from any watched object that no handler needs it for; Fledge registers none
that does, so the name kopf is given must be one that nobody carries.  kopf watches only the Canaries (the
other kinds are canary.cluster.informers'), which carry Fledge's own revertOnDeletion finalizer.  Driven through
kopf's own processing of one watch event."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.actions import lifecycles, loggers
from kopf._core.engines import indexing
from kopf._core.reactor import inventory, processing

from canary.controller import handlers
from canary.controller import process as controller
from canary.engine import revert

pytestmark = pytest.mark.unit

OTHERS = "kopf.zalando.org/KopfFinalizerMarker"  # kopf's default, which other kopf operators hold
assert handlers.GROUP  # imported for its handlers, registered in kopf's default registry


def patch_after_event(finalizer: str | None, finalizers: list[str]) -> patches.Patch:
    """kopf's patch for one watch event of a Canary, with Fledge's handlers (``canary.controller.handlers``, in kopf's
    default registry) and Fledge's settings (``controller.configure_kopf``), or kopf's finalizer renamed."""
    registry = kopf.get_default_registry()
    resource = references.Resource(handlers.GROUP, handlers.VERSION, "canaries", namespaced=True)
    assert registry._watching.has_handlers(resource=resource), "canary.controller.handlers watch Canaries through kopf"
    settings = kopf.OperatorSettings()
    controller.configure_kopf(settings, literal_namespaces=True)
    if finalizer is not None:
        settings.persistence.finalizer = finalizer
    raw: Any = {"apiVersion": f"{handlers.GROUP}/{handlers.VERSION}", "kind": "Canary",
                "metadata": {"name": "web", "namespace": "prod", "uid": "u1", "resourceVersion": "5",
                             "finalizers": finalizers}, "spec": {}}
    body = bodies.Body(raw)
    patch = patches.Patch()
    logger = loggers.LocalObjectLogger(body=body, settings=settings)

    async def process() -> None:  # kopf's per-object memory is made inside its event loop
        await processing.process_resource_causes(
            lifecycle=lifecycles.all_at_once, indexers=indexing.OperatorIndexers(), registry=registry,
            settings=settings, resource=resource, raw_event={"type": "MODIFIED", "object": raw}, body=body,
            patch=patch, memory=inventory.ResourceMemory(memo=ephemera.Memo()), local_logger=logger,
            event_logger=logger, stream_pressure=None, operator_paused=None, consistency_time=None)

    asyncio.run(process())
    return patch


def finalizers_after(patch: patches.Patch, finalizers: list[str]) -> list[str]:
    body: dict[str, Any] = {"metadata": {"finalizers": list(finalizers)}}
    for fn in patch.fns:
        fn(body)
    return list(body["metadata"].get("finalizers") or [])


def test_kopf_would_strip_the_finalizer_it_is_named_after() -> None:
    # What makes the setting matter: with kopf's default name, another operator's finalizer goes.
    held = [OTHERS, revert.FINALIZER]
    assert finalizers_after(patch_after_event(OTHERS, held), held) == [revert.FINALIZER]
    assert finalizers_after(patch_after_event(revert.FINALIZER, held), held) == [OTHERS]


def test_with_fledges_settings_every_finalizer_survives_a_watch_event() -> None:
    held = [OTHERS, revert.FINALIZER]
    assert finalizers_after(patch_after_event(None, held), held) == held

