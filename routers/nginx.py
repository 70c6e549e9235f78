"""NGINX router: a canary Ingress ``<ingress>-canary`` next to the user's Ingress, steered by ingress-nginx annotations.

Why this exists: ingress-nginx splits traffic between an Ingress and a second Ingress for the same
hosts and paths marked ``canary: "true"``, by weight (``canary-weight``), by header (``canary-by-header``
with ``-value`` or ``-pattern``) or by cookie (``canary-by-cookie``, canary when the cookie is
``always``).  Fledge copies the Ingress named by ``spec.ingressRef``, points the copy's backends for the
apex Service at ``<svc>-canary``, and writes only the annotations.

What it must not do: touch the user's Ingress (it is only read from the watch cache), or mirror traffic
(ingress-nginx cannot mirror to a canary Ingress; ``validate`` says so).  The annotation prefix is
``nginx.ingress.kubernetes.io`` unless the controller runs with another ``--annotations-prefix``: pass
``annotation_prefix`` to ``NginxRouter`` or call ``configure`` once at startup.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

from apis import errors, models, vocabulary
from routers import base, ingress_copy, matching

DEFAULT_ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io"
API_VERSION, KIND = ingress_copy.API_VERSION, ingress_copy.KIND
# A cookie name followed by =always inside a regex such as ^(.*?;)?(canary=always)(;.*)?$ (Flagger's style).
_COOKIE_ALWAYS = re.compile(r"([\w.\-]+)=always")


def ingress_ref(canary: models.Canary) -> models.IngressRef:
    """``spec.ingressRef``; a SpecError when it is missing."""
    return ingress_copy.ingress_ref(canary, "nginx")


def canary_ingress_name(canary: models.Canary) -> str:
    return ingress_copy.canary_ingress_name(canary, "nginx")


def ab_annotations(match: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """``analysis.match`` as canary-by-header[-value|-pattern] and canary-by-cookie (keys without the prefix).

    ingress-nginx honours one header and one cookie, each enough on its own, so each must be its own
    match entry; anything else is a SpecError naming the entry.
    """
    result: dict[str, str] = {}
    for index, entry in enumerate(match):
        field = f"spec.analysis.match[{index}]"
        extra = sorted(set(entry) - {"headers", "name"})
        if extra:
            raise errors.SpecError(f"{field}.{extra[0]}", "ingress-nginx routes canaries by one header and one "
                                                          "cookie only; match on headers, or use another provider")
        headers = entry.get("headers") or {}
        if len(headers) != 1:
            raise errors.SpecError(f"{field}.headers", "ingress-nginx cannot require several conditions at once; "
                                                       "put each header or cookie in its own match entry")
        ((name, condition),) = headers.items()
        where = f"{field}.headers.{name}"
        kind, value = matching.string_match(condition, where)
        if str(name).lower() == "cookie":
            if "canary-by-cookie" in result:
                raise errors.SpecError(where, "ingress-nginx takes one canary cookie; keep a single cookie match")
            result["canary-by-cookie"] = _cookie_name(kind, value, where)
            continue
        if "canary-by-header" in result:
            raise errors.SpecError(where, "ingress-nginx takes one canary header; keep a single header match")
        result["canary-by-header"] = str(name)
        if kind == "exact":
            result["canary-by-header-value"] = value
        elif kind == "regex":
            result["canary-by-header-pattern"] = value
        else:  # prefix
            result["canary-by-header-pattern"] = "^" + matching.escape(value)
    return result


def _cookie_name(kind: str, value: str, field: str) -> str:
    # ingress-nginx sends a request to the canary when the named cookie's value is "always".
    if kind == "exact":
        name, _, cookie_value = value.partition("=")
        if not cookie_value or cookie_value == "always":
            return name
    elif kind == "regex":
        found = _COOKIE_ALWAYS.search(value)
        if found:
            return found.group(1)
    raise errors.SpecError(field, "ingress-nginx routes by a cookie whose value is 'always'; write "
                                  "{regex: '^(.*?;)?(NAME=always)(;.*)?$'} or {exact: NAME}")


def canary_annotations(canary: models.Canary, weights: vocabulary.Weights) -> dict[str, str]:
    """The canary annotations (keys without the prefix) for ``weights``."""
    if weights.mirrored:
        raise ValueError("ingress-nginx cannot mirror traffic; the nginx router never receives mirrored weights")
    if canary.spec.analysis.strategy == "ab":
        # (0, 100) sends the matching requests to the canary; any other split sends none there.
        routed = ab_annotations(canary.spec.analysis.match) if weights.canary > 0 else {}
        return {"canary": "true", "canary-weight": "0", **routed}
    return {"canary": "true", "canary-weight": str(weights.canary)}


def canary_ingress(canary: models.Canary, ingress: Mapping[str, Any], weights: vocabulary.Weights,
                   annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX) -> base.Manifest:
    """The Ingress ``<ingress>-canary``: a copy of ``ingress`` whose apex backends point at ``<svc>-canary``."""
    name = canary_ingress_name(canary)
    meta = ingress.get("metadata") or {}
    spec = copy.deepcopy(ingress.get("spec") or {})
    if not _retarget(spec, {canary.spec.service_name, canary.spec.target_ref.name}, canary.spec.canary_service_name):
        raise errors.SpecError("spec.ingressRef.name", f"Ingress {meta.get('name')} has no backend for Service "
                                                       f"{canary.spec.service_name}; point a path at it")
    annotations = ingress_copy.copied_annotations(ingress, dropped_prefix=f"{annotation_prefix}/canary")
    for key, value in canary_annotations(canary, weights).items():
        annotations[f"{annotation_prefix}/{key}"] = value
    return ingress_copy.canary_ingress(canary, ingress, name, annotations, spec)


def _retarget(spec: base.Manifest, names: set[str], canary_service: str) -> bool:
    """Point every backend naming one of ``names`` at ``canary_service``, in place; True when one did."""
    backends = [path.get("backend") or {} for rule in spec.get("rules") or []
                for path in (rule.get("http") or {}).get("paths") or []]
    backends.append(spec.get("defaultBackend") or {})
    found = False
    for backend in backends:
        service = backend.get("service")
        if isinstance(service, dict) and service.get("name") in names:
            service["name"] = canary_service
            found = True
    return found


def ingress_weights(canary_ingress: Mapping[str, Any], annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX
                    ) -> vocabulary.Weights:
    """Weights from the canary Ingress annotations: by header or cookie is (0, 100), else canary-weight."""
    annotations = (canary_ingress.get("metadata") or {}).get("annotations") or {}

    def annotation(key: str) -> str:
        return str(annotations.get(f"{annotation_prefix}/{key}", "")).strip()

    if annotation("canary").lower() != "true":
        return vocabulary.ALL_PRIMARY
    if annotation("canary-by-header") or annotation("canary-by-cookie"):
        return vocabulary.Weights(primary=0, canary=100)
    try:
        weight = min(max(int(annotation("canary-weight") or 0), 0), 100)
    except ValueError:
        weight = 0  # ingress-nginx ignores a weight it cannot parse
    return vocabulary.Weights(primary=100 - weight, canary=weight)


class NginxRouter(ingress_copy.IngressCopyRouter):
    """Applies the canary Ingress built by ``canary_ingress``; never writes the user's Ingress."""

    provider = "nginx"

    def __init__(self, store: base.ObjectStore, writer: base.Writer,
                 annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX) -> None:
        super().__init__(store, writer)
        self.annotation_prefix = annotation_prefix

    def _build(self, canary: models.Canary, user: base.Manifest, weights: vocabulary.Weights) -> base.Manifest:
        return canary_ingress(canary, user, weights, self.annotation_prefix)

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write the canary annotations for ``weights``; idempotent; ValueError for mirrored weights.  All on the
        primary never fails on the user's Ingress (``copying``)."""
        await self._write(canary, weights)

    def _weights(self, canary: models.Canary, current: Mapping[str, Any]) -> vocabulary.Weights:
        return ingress_weights(current, self.annotation_prefix)

    def validate(self, canary: models.Canary) -> None:
        """SpecError for a missing ingressRef or Ingress, mirroring, or an A/B match ingress-nginx cannot serve."""
        ingress_ref(canary)
        if canary.spec.analysis.mirror:
            raise errors.SpecError("spec.analysis.mirror", "ingress-nginx cannot mirror traffic to a canary; "
                                                           "remove analysis.mirror or use the istio or gatewayapi "
                                                           "provider")
        canary_ingress(canary, self._user(canary), vocabulary.Weights(primary=0, canary=100),
                       self.annotation_prefix)


def configure(annotation_prefix: str = DEFAULT_ANNOTATION_PREFIX) -> None:
    """Make the ``nginx`` provider use ``annotation_prefix`` (ingress-nginx's ``--annotations-prefix``)."""
    base.register("nginx")(functools.partial(NginxRouter, annotation_prefix=annotation_prefix))


configure()
