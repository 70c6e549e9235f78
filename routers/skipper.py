"""Skipper router: a canary Ingress ``<ingress>-canary`` whose backends carry Skipper's backend-weights annotation.

Why this exists: Skipper splits one Ingress path between several backends by the ``zalando.org/backend-weights``
annotation.  As Flagger does, Fledge copies the Ingress named by ``spec.ingressRef``, points each path of the
apex Service at ``<svc>-primary`` and adds the same path for ``<svc>-canary``, and writes the weights as JSON.
The copy's ``zalando.org/skipper-predicate`` starts with ``Weight(100)`` while the canary has weight, so its
routes win over the user's Ingress for the same host and path, and with ``False()`` once the canary's weight is
0, so the user's Ingress (the apex Service, on the primary) serves alone again.

What it must not do: touch the user's Ingress (only read from the watch cache), or route by header or cookie:
Flagger's Skipper router has no A/B testing, and Skipper cannot mirror through an Ingress (``validate`` says so).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from apis import errors, models, vocabulary
from routers import base, ingress_copy

API_VERSION, KIND = ingress_copy.API_VERSION, ingress_copy.KIND
WEIGHTS = "zalando.org/backend-weights"
PREDICATE = "zalando.org/skipper-predicate"
# The canary Ingress's routes outrank the user's for the same host and path, or never match at all.
ENABLED, DISABLED = "Weight(100)", "False()"


def ingress_ref(canary: models.Canary) -> models.IngressRef:
    """``spec.ingressRef``; a SpecError when it is missing."""
    return ingress_copy.ingress_ref(canary, "skipper")


def canary_ingress_name(canary: models.Canary) -> str:
    return ingress_copy.canary_ingress_name(canary, "skipper")


def predicate(user: str, weights: vocabulary.Weights) -> str:
    """The user's predicate with Fledge's first: ``Weight(100)`` while the canary has weight, else ``False()``."""
    kept = [part.strip() for part in user.split("&&") if part.strip() and part.strip() not in (ENABLED, DISABLED)]
    return " && ".join([ENABLED if weights.canary > 0 else DISABLED, *kept])


def canary_ingress(canary: models.Canary, ingress: Mapping[str, Any], weights: vocabulary.Weights) -> base.Manifest:
    """``<ingress>-canary``: the user's Ingress with each apex path split between the primary and the canary."""
    meta = ingress.get("metadata") or {}
    spec = copy.deepcopy(ingress.get("spec") or {})
    names = {canary.spec.service_name, canary.spec.target_ref.name}
    found = False
    for rule in spec.get("rules") or []:
        paths = (rule.get("http") or {}).get("paths") or []
        for path in list(paths):
            service = (path.get("backend") or {}).get("service")
            if isinstance(service, dict) and service.get("name") in names:
                service["name"] = canary.spec.primary_service_name
                second = copy.deepcopy(path)
                second["backend"]["service"]["name"] = canary.spec.canary_service_name
                paths.append(second)
                found = True
    if not found:
        raise errors.SpecError("spec.ingressRef.name", f"Ingress {meta.get('name')} has no path for Service "
                                                       f"{canary.spec.service_name}; point a path at it")
    annotations = ingress_copy.copied_annotations(ingress)
    user_predicate = annotations.get(PREDICATE, "")
    annotations[WEIGHTS] = json.dumps({canary.spec.primary_service_name: weights.primary,
                                       canary.spec.canary_service_name: weights.canary}, separators=(",", ":"))
    annotations[PREDICATE] = predicate(user_predicate, weights)
    return ingress_copy.canary_ingress(canary, ingress, canary_ingress_name(canary), annotations, spec)


def ingress_weights(canary: models.Canary, body: Mapping[str, Any]) -> vocabulary.Weights:
    """Weights from the canary Ingress's backend-weights; all on the primary when they cannot be read."""
    annotations = (body.get("metadata") or {}).get("annotations") or {}
    try:
        weights = json.loads(str(annotations.get(WEIGHTS) or "{}"))
        canary_weight = int(weights.get(canary.spec.canary_service_name, 0))
    except (ValueError, TypeError, AttributeError):
        return vocabulary.ALL_PRIMARY
    if str(annotations.get(PREDICATE) or "").strip().startswith(DISABLED):
        canary_weight = 0  # the copy's routes never match: the user's Ingress serves, on the primary
    canary_weight = min(max(canary_weight, 0), 100)
    return vocabulary.Weights(primary=100 - canary_weight, canary=canary_weight)


@base.register("skipper")
class SkipperRouter(ingress_copy.IngressCopyRouter):
    """Applies the canary Ingress built by ``canary_ingress``; never writes the user's Ingress."""

    provider = "skipper"

    def _build(self, canary: models.Canary, user: base.Manifest, weights: vocabulary.Weights) -> base.Manifest:
        return canary_ingress(canary, user, weights)

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the backend weights and the predicate for ``weights``; idempotent.  All on the primary never
        fails on the user's Ingress (``copying``)."""
        await self._write(canary, weights)

    def _weights(self, canary: models.Canary, current: Mapping[str, Any]) -> vocabulary.Weights:
        return ingress_weights(canary, current)

    def validate(self, canary: models.Canary) -> None:
        """SpecError for a missing ingressRef or Ingress, mirroring, or A/B testing (Skipper has neither)."""
        ingress_ref(canary)
        analysis = canary.spec.analysis
        if analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "Skipper cannot mirror traffic to a canary; remove "
                                                           "analysis.mirror or use the istio or gatewayapi provider")
        if analysis.match:
            raise errors.SpecError("spec.analysis.match", "Flagger's skipper provider has no A/B testing; remove "
                                                          "analysis.match or use the nginx, istio or gatewayapi "
                                                          "provider")
        if analysis.session_affinity is not None:
            raise errors.SpecError("spec.analysis.sessionAffinity", "the skipper provider has no session affinity; "
                                                                    "remove it or use the istio or gatewayapi "
                                                                    "provider")
        canary_ingress(canary, self._user(canary), vocabulary.Weights(primary=0, canary=100))
