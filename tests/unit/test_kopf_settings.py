"""kopf's handling of finalizers on the objects Fledge watches: it must touch no one's.

kopf removes its own finalizer from any watched object that no handler needs it for; Fledge registers none
that does, so the name kopf is given must be one that nobody carries.  Driven through kopf's own processing
of one watch event."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest
from kopf._cogs.structs import bodies, ephemera, patches, references
from kopf._core.actions import lifecycles, loggers
from kopf._core.engines import indexing
from kopf._core.intents import registries
from kopf._core.reactor import inventory, processing

from canary import controller, revert

pytestmark = pytest.mark.unit

OTHERS = "kopf.zalando.org/KopfFinalizerMarker"  # kopf's default, which other kopf operators hold


def patch_after_event(finalizer: str, finalizers: list[str]) -> patches.Patch:
    registry = registries.OperatorRegistry()
    resource = references.Resource("apps", "v1", "deployments", namespaced=True)

    def on_event(**_: Any) -> None:
        return None

    kopf.on.event("apps", "v1", "deployments", registry=registry)(on_event)  # Fledge's kind of handler
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = finalizer
    settings.persistence.diffbase_storage = controller._NoDiffBase()
    raw: Any = {"apiVersion": "apps/v1", "kind": "Deployment",
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
    return list(body["metadata"].get("finalizers") or finalizers)


def test_kopf_would_strip_the_finalizer_it_is_named_after() -> None:
    # What makes the setting matter: with kopf's default name, another operator's finalizer goes.
    held = [OTHERS, revert.FINALIZER]
    assert finalizers_after(patch_after_event(OTHERS, held), held) == [revert.FINALIZER]
    assert finalizers_after(patch_after_event(revert.FINALIZER, held), held) == [OTHERS]


def test_with_fledges_setting_every_finalizer_survives_a_watch_event() -> None:
    held = [OTHERS, revert.FINALIZER]
    assert controller.KOPF_FINALIZER not in held
    assert finalizers_after(patch_after_event(controller.KOPF_FINALIZER, held), held) == held

