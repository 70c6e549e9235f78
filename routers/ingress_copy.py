"""What the routers that split traffic with a copy of the user's Ingress share (``nginx``, ``skipper``).

Why this exists: both read the Ingress named by ``spec.ingressRef`` from the watch cache, write a copy of it
named ``<ingress>-canary``, and delete only the copy this Canary made.  The rules for that copy (its name, which
of the user's annotations and labels it keeps, whom it belongs to, when it may be deleted) are one rule, here;
each router adds only how its data plane reads the split.

What it must not do: write the user's Ingress, or delete a ``<ingress>-canary`` another Canary or a person made.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apis import errors, models, naming, vocabulary
from routers import base, copying

API_VERSION = "networking.k8s.io/v1"
KIND = "Ingress"
CANARY_SUFFIX = "-canary"
# Never copied from the user's Ingress: kubectl's record of the user's own apply.
_SKIPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def ingress_ref(canary: models.Canary, provider: str) -> models.IngressRef:
    """``spec.ingressRef``; a SpecError when it is missing."""
    if canary.spec.ingress_ref is None:
        raise errors.SpecError("spec.ingressRef", f"the {provider} provider needs spec.ingressRef naming the Ingress "
                                                  "that routes to the app (apiVersion networking.k8s.io/v1)")
    return canary.spec.ingress_ref


def canary_ingress_name(canary: models.Canary, provider: str) -> str:
    return ingress_ref(canary, provider).name + CANARY_SUFFIX


def copied_annotations(ingress: Mapping[str, Any], dropped_prefix: str | None = None) -> dict[str, str]:
    """The user's annotations the copy keeps: not kubectl's record, not a GitOps tool's, and none starting with
    ``dropped_prefix`` (the router's own, which it writes itself)."""
    annotations = naming.without_toolkit((ingress.get("metadata") or {}).get("annotations"))
    return {key: str(value) for key, value in annotations.items()
            if key not in _SKIPPED_ANNOTATIONS and not (dropped_prefix and key.startswith(dropped_prefix))}


def canary_ingress(canary: models.Canary, ingress: Mapping[str, Any], name: str, annotations: Mapping[str, str],
                   spec: base.Manifest) -> base.Manifest:
    """The copy named ``name`` with ``spec`` and the router's ``annotations``: the user's Ingress may be Flux's, and
    its copy must neither claim to be nor be reverted by Flux, so the toolkit's labels stay behind."""
    labels = {**naming.without_toolkit((ingress.get("metadata") or {}).get("labels")), **naming.MANAGED_BY}
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": canary.namespace, "labels": labels,
                         "annotations": naming.gitops_disabled(dict(annotations)),
                         "ownerReferences": [naming.owner_reference(canary)]},
            "spec": spec}


class IngressCopyRouter(copying.CopyRouter):
    """Reads the user's Ingress and its ``-canary`` copy from the watch cache; deletes only its own copy, at the
    end or (``copying``) when all traffic goes to the primary and the user's Ingress is gone or unusable."""

    provider = ""
    api_version, kind = API_VERSION, KIND

    def _user(self, canary: models.Canary) -> base.Manifest:
        name = ingress_ref(canary, self.provider).name
        ingress = self._store.get(API_VERSION, KIND, canary.namespace, name)
        if ingress is None:
            raise errors.SpecError("spec.ingressRef.name", f"Ingress {canary.namespace}/{name} does not exist; "
                                                           "create it or fix spec.ingressRef.name")
        return ingress

    def _copy_name(self, canary: models.Canary) -> str | None:
        return canary_ingress_name(canary, self.provider) if canary.spec.ingress_ref is not None else None

    def _weights(self, canary: models.Canary, current: Mapping[str, Any]) -> vocabulary.Weights:
        raise NotImplementedError

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        """Weights from the cached canary Ingress; None when it does not exist."""
        current = self._copy(canary)
        return self._weights(canary, current) if current is not None else None
