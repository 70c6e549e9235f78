"""revertOnDeletion: hand the user's Deployment or DaemonSet and routes back when a Canary is deleted.

Why this exists: deleting a Canary must not leave an app with its target scaled
to zero and its traffic pointing at a primary that garbage collection is about
to remove.  Order: scale the target back up, wait for it, restore the routes
the user had and the Services Fledge took over, then the finalizer is released
and the owned objects go.

What it must not do: run ``revert`` for a Canary without ``revertOnDeletion:
true``.  ``release_services`` alone runs for every deleted Canary: a Service
the user had is never left pointing at a primary that is about to go.
"""

from __future__ import annotations

from typing import Any

from apis import errors, models
from canary import observe, runtime, services, workloads


async def revert(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    canary = models.parse_canary(body)
    namespace = canary.namespace
    kind = canary.spec.target_ref.kind
    target = rt.store.get("apps/v1", kind, namespace, canary.spec.target_ref.name)
    primary = rt.store.get("apps/v1", kind, namespace, canary.spec.primary_target_name)
    if target is not None:
        replicas = int(((primary or {}).get("spec") or {}).get("replicas", 1)) or 1
        start = workloads.scale_patch(target, replicas) if workloads.parked(target) else None
        if start is not None:
            await rt.writer.patch("apps/v1", kind, namespace, canary.spec.target_ref.name, start)
        state = workloads.workload_state(rt.store.get("apps/v1", kind, namespace, canary.spec.target_ref.name))
        if not state.rolled_out(canary.spec.analysis.canary_ready_threshold):
            raise errors.TargetNotReady(f"waiting for {namespace}/{canary.spec.target_ref.name} to be ready "
                                        "before restoring its routes")
    router = observe.router_for(rt, canary)
    await router.finalize(canary)
    await release_services(rt, canary)


async def release_services(rt: runtime.Runtime, canary: models.Canary) -> None:
    """Give the Services Fledge took over (it did not create them) their own selector and ports back.

    The ones Fledge created carry the Canary's owner reference; garbage collection removes those.
    """
    for name in (canary.spec.service_name, canary.spec.primary_service_name, canary.spec.canary_service_name):
        current = rt.store.get("v1", "Service", canary.namespace, name)
        patch = services.restore_patch(current, canary) if current is not None else None
        if patch is not None:
            await rt.writer.patch("v1", "Service", canary.namespace, name, patch)
