"""revertOnDeletion: hand the user's Deployment and routes back when a Canary is deleted.

Why this exists: deleting a Canary must not leave an app with its target scaled
to zero and its traffic pointing at a primary that garbage collection is about
to remove.  Order: scale the target back up, wait for it, restore the routes
the user had, then the finalizer is released and the owned objects go.

What it must not do: run for a Canary without ``revertOnDeletion: true``.
"""

from __future__ import annotations

from typing import Any

from canary import errors, models, observe, runtime, workloads


async def revert(rt: runtime.Runtime, body: dict[str, Any]) -> None:
    canary = models.parse_canary(body)
    namespace = canary.namespace
    target = rt.store.get("apps/v1", "Deployment", namespace, canary.spec.target_ref.name)
    primary = rt.store.get("apps/v1", "Deployment", namespace, canary.spec.primary_target_name)
    if target is not None:
        replicas = int(((primary or {}).get("spec") or {}).get("replicas", 1)) or 1
        if int((target.get("spec") or {}).get("replicas", 0)) == 0:
            await rt.writer.patch("apps/v1", "Deployment", namespace, canary.spec.target_ref.name,
                                  workloads.scale(replicas))
        state = workloads.workload_state(rt.store.get("apps/v1", "Deployment", namespace, canary.spec.target_ref.name))
        if not state.rolled_out(canary.spec.analysis.canary_ready_threshold):
            raise errors.TargetNotReady(f"waiting for {namespace}/{canary.spec.target_ref.name} to be ready "
                                        "before restoring its routes")
    router = observe.router_for(rt, canary)
    await router.finalize(canary)
