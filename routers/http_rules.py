"""The HTTP rules Fledge owns at the head of a route object, laid out once for the Istio and Gateway API routers.

Why this exists: a VirtualService and an HTTPRoute are different objects, but Fledge puts the same rules at
their head in the same order: the session cookie's rule first (``analysis.sessionAffinity``: its holders go
to the canary while it has weight, and are told to drop the cookie after the run), the primary cookie's rule
next (``primaryCookieName``: its holders stay on the primary while the canary has weight), then either one weighted
rule (canary, blue/green, mirroring) or, for A/B testing, the rule for ``analysis.match`` followed by the
default rule to the primary.  ``layout`` decides that order and which backend gets which weight; a ``Form``
writes the pieces in its router's dialect.  ``RouteObjectRouter`` is the part of both router classes that
reads the one route object ``<svc>`` and writes it with new weights.

What it must not do: know a router's field names (the ``Form`` does), or read the cluster.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from apis import affinity, models, naming, vocabulary
from routers import base, session

Manifest = dict[str, Any]


class Form(Protocol):
    """How one router writes a rule and its parts."""

    def rule(self, matches: Sequence[Manifest], backends: list[Manifest], mirrored: bool) -> Manifest:
        """A rule sending the requests of ``matches`` (all of them when empty) to ``backends``."""
        ...

    def backend(self, name: str, weight: int) -> Manifest:
        """A weighted backend, the Service ``name``."""
        ...

    def cookie_matches(self, regex: str) -> list[Manifest]:
        """The service's matches AND-ed with a ``Cookie`` header that matches ``regex``."""
        ...

    def hand_out(self, backend: Manifest, set_cookie: str) -> None:
        """Make the answers of ``backend`` carry ``Set-Cookie: set_cookie``, in place."""
        ...

    def take_back(self, rule: Manifest, clear_cookie: str) -> None:
        """Make the answers of ``rule`` carry ``Set-Cookie: clear_cookie``, in place."""
        ...


def layout(canary: models.Canary, weights: vocabulary.Weights, form: Form, matches: Sequence[Manifest],
           ab_matches: Sequence[Manifest]) -> list[Manifest]:
    """Fledge's rules for ``weights``: the session rule, then the weighted rule or the A/B pair.

    ``matches`` are the service's matches and ``ab_matches`` the analysis matches AND-ed with them, both in
    the router's form; ``ab_matches`` is read only for the A/B strategy.
    """
    primary, canary_name = canary.spec.primary_service_name, canary.spec.canary_service_name
    weighted = [form.backend(primary, weights.primary), form.backend(canary_name, weights.canary)]
    cookies = affinity.plan(canary, weights)
    sessions: list[Manifest] = []
    if cookies.cookie is not None:
        cookie_matches = form.cookie_matches(session.match_regex(cookies.cookie))
        if cookies.sticky:
            # The canary's answers hand out the cookie; its holders then reach the canary alone.
            form.hand_out(weighted[1], cookies.cookie.set_cookie())
            to_canary = [form.backend(primary, 0), form.backend(canary_name, 100)]
            sessions.append(form.rule(cookie_matches, to_canary, False))
            if cookies.primary is not None:
                # The primary's answers hand out its own cookie (for an interval); its holders stay on the primary.
                form.hand_out(weighted[0], cookies.primary.set_cookie())
                to_primary = [form.backend(primary, 100), form.backend(canary_name, 0)]
                sessions.append(form.rule(form.cookie_matches(session.match_regex(cookies.primary)), to_primary,
                                          False))
        else:
            cleared = form.rule(cookie_matches, copy.deepcopy(weighted), False)
            form.take_back(cleared, cookies.cookie.clear_cookie())
            sessions.append(cleared)
    if canary.spec.analysis.strategy != "ab":
        return copy.deepcopy([*sessions, form.rule(matches, weighted, weights.mirrored)])
    primary_only = [form.backend(primary, 100)]
    return copy.deepcopy([*sessions, form.rule(ab_matches, weighted, False),
                          form.rule(matches, primary_only, weights.mirrored)])


class RouteObjectRouter(base.CachedRouter):
    """A router whose split lives in one object ``<svc>`` of ``kind``, built by ``build`` and read by ``weights_of``."""

    kind = ""
    default_api_version = ""

    def __init__(self, store: base.ObjectStore, writer: base.Writer, api_version: str | None = None) -> None:
        super().__init__(store, writer)
        self.api_version = api_version or self.default_api_version

    @staticmethod
    def build(canary: models.Canary, weights: vocabulary.Weights, existing: Mapping[str, Any] | None,
              api_version: str, /) -> Manifest:
        """The route object to apply for ``weights``, keeping what the user has in ``existing``; no I/O."""
        raise NotImplementedError

    @staticmethod
    def weights_of(existing: Mapping[str, Any], canary: models.Canary, /) -> vocabulary.Weights | None:
        """The weights Fledge's rules in ``existing`` hold; None when it has none."""
        raise NotImplementedError

    def desired(self, canary: models.Canary) -> list[Manifest]:
        """The route object as the spec says, with the weights and mirroring it has (100/0 when new)."""
        existing = self.cached(canary)
        weights = (self.weights_of(existing, canary) if existing is not None else None) or vocabulary.ALL_PRIMARY
        return [self.build(canary, weights, existing, self.api_version)]

    def cached(self, canary: models.Canary) -> Manifest | None:
        return self._store.get(self.api_version, self.kind, canary.namespace, canary.spec.service_name)

    async def set_routes(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Write ``weights`` (and the mirror) into Fledge's rules; idempotent."""
        await self._writer.apply(self.build(canary, weights, self.cached(canary), self.api_version),
                                 naming.field_manager(canary))

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        """Weights of the cached route object; None when it does not exist or has no rule to the canary."""
        existing = self.cached(canary)
        return self.weights_of(existing, canary) if existing is not None else None
