"""Knative Service targets: which Revision is the primary, which is the canary, and the one write Fledge makes.

Why this exists: a Knative Service keeps every version of an app itself, as Revisions, and routes between
them by ``spec.traffic``; there is no ``-primary`` copy and no Service of Fledge's.  As in Flagger, the
primary is the Revision named by the Service's annotation ``flagger.app/primary-revision`` (pinned at
initialization, moved at promotion), the canary is the Service's latest created Revision
(``status.latestCreatedRevisionName``, which also names a release: a new template makes a new Revision), and
the split is two traffic entries: ``latestRevision: true`` for the canary and ``revisionName: <primary>`` for
the primary.  Flagger's annotation key is kept so that a Service Flagger managed reads the same here.

What Fledge writes on the Service (the annotation and ``spec.traffic``, nothing else) is built in
``routers.knative``; promotion applies the same object with the pinned Revision moved.

What it must not do: decide anything (the core does), read from the API server, or touch the Service's
template, which is the user's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from apis import models
from canary import core
from routers import knative as router

API_VERSION, SERVICE, REVISION = router.API_VERSION, router.SERVICE, router.REVISION
primary_revision, latest_revision = router.primary_revision, router.latest_revision


def is_knative(canary: models.Canary) -> bool:
    return canary.spec.target_ref.knative


def template_observed(service: Mapping[str, Any]) -> bool:
    """Whether Knative has seen the Service's latest spec (else its latest Revision is an older template's)."""
    meta, status = service.get("metadata") or {}, service.get("status") or {}
    return int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)


def revision_state(revision: Mapping[str, Any] | None) -> core.Workload:
    """A Revision's readiness in a workload's terms: one ready "pod" when its Ready condition is True.

    Knative scales a Revision's pods itself (to zero when idle), so the count of pods says nothing about
    whether it can serve; its Ready condition does, and it is what Flagger waits for."""
    if revision is None:
        return core.MISSING
    name = str((revision.get("metadata") or {}).get("name") or "")
    conditions = (revision.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return core.Workload(exists=True, desired=1, updated=1, available=1 if ready else 0, total=1,
                         generation_observed=True, revision=name, progressed_at=None)


def target_state(latest: Mapping[str, Any] | None, pinned: str | None) -> core.Workload:
    """The canary's facts: the latest Revision's readiness, "parked" (no replica desired) while it is the pinned
    primary itself, as a Deployment target is parked between releases."""
    state = revision_state(latest)
    if not state.exists or state.revision != pinned:
        return state
    return dataclasses.replace(state, desired=0, updated=0, total=0)
