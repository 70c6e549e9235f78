"""Session affinity (``analysis.sessionAffinity``): which cookie a Canary's routes hand out or take back.

Why this exists: the routes and the status must name the same cookie at the same moment.  The routers
(``routers.http_rules``, for the Gateway API and Istio) write the rules that hand it out or take it back;
the decision core reports it in status (Flagger's ``sessionAffinityCookie``, ``previousSessionAffinityCookie``
and ``primarySessionAffinityCookie``) for the routes it decided.  Both read this one derivation, which lives
here, below them, because the core may import nothing but ``apis``.

While the canary has weight, its responses set ``Set-Cookie: <cookieName>=<value>; Max-Age=<maxAge>`` and
a route rule placed before the weighted one sends every request carrying that cookie to the canary.  When
the canary loses its weight after a run (promotion or rollback), that rule is replaced by one that answers
the cookie's holders from the primary with ``Max-Age=-1``, which makes browsers drop it; it stays until the
next run hands out a new cookie.

With ``primaryCookieName`` the primary pins its clients too, as Flagger's does: while the canary has weight,
the primary's responses set that cookie with a ``Max-Age`` of one analysis interval, and a rule after the
canary's sends its holders to the primary.  Without it a client that once reached the canary stays there
while every other request is weighted afresh, so the canary's share of clients outgrows its weight; with it
a client the weights sent to the primary stays there until the next step, then takes its chance with the new
weights.  Nothing takes that cookie back: it expires within the interval.

The values are derived, not drawn: a digest of the Canary's uid and the revision under analysis
(``status.lastAppliedSpec``), and of the side for the primary's cookie.  Every tick, a restarted controller
and a re-applied route therefore name the same cookies without storing them first, each release gets new
ones, and they cannot be guessed without the Canary's uid.  (Flagger draws random values and keeps them in
status; Fledge reports the same status fields from this derivation.)

What it must not do: build route objects or matches (each router does, in its own form, with the header
names in ``routers.session``), or read the cluster.
"""

from __future__ import annotations

import dataclasses
import hashlib

from apis import models, vocabulary

# Phases that follow a run in which the canary had traffic: its cookie holders must be told to drop it.
_AFTER_RUN = vocabulary.PROMOTING_PHASES | vocabulary.FINAL_PHASES


@dataclasses.dataclass(frozen=True)
class Cookie:
    name: str
    value: str
    max_age: int

    @property
    def pair(self) -> str:
        """``name=value``, as status reports it and as a request carries it."""
        return f"{self.name}={self.value}"

    def set_cookie(self) -> str:
        """The ``Set-Cookie`` value the canary's responses carry."""
        return f"{self.pair}; Max-Age={self.max_age}"

    def clear_cookie(self) -> str:
        """The ``Set-Cookie`` value that makes a client drop the cookie."""
        return f"{self.pair}; Max-Age=-1"


@dataclasses.dataclass(frozen=True)
class Plan:
    """What the routes do about the cookie: hand it out (``sticky``), take it back (``clear``), or nothing;
    ``primary`` is the primary's cookie, handed out while ``sticky`` (``primaryCookieName``)."""

    cookie: Cookie | None = None
    sticky: bool = False
    primary: Cookie | None = None

    @property
    def clear(self) -> bool:
        return self.cookie is not None and not self.sticky


def cookie(canary: models.Canary) -> Cookie | None:
    """The cookie of the revision under analysis; None without ``sessionAffinity.cookieName`` or a revision."""
    affinity = canary.spec.analysis.session_affinity
    revision = canary.status.last_applied_spec
    if affinity is None or not affinity.cookie_name or not revision:
        return None
    return Cookie(affinity.cookie_name, _value(canary, revision), affinity.max_age)


def primary_cookie(canary: models.Canary) -> Cookie | None:
    """The primary's cookie during the analysis of this revision, living one analysis interval; None without
    ``sessionAffinity.primaryCookieName`` (or without the canary's cookie)."""
    affinity = canary.spec.analysis.session_affinity
    revision = canary.status.last_applied_spec
    if affinity is None or not affinity.primary_cookie_name or cookie(canary) is None or not revision:
        return None
    max_age = max(1, int(canary.spec.analysis.interval_seconds))  # whole seconds, as Flagger writes it
    return Cookie(affinity.primary_cookie_name, _value(canary, revision, "primary"), max_age)


def cookie_names(canary: models.Canary) -> tuple[str, ...]:
    """The names of the cookies that Fledge's session rules match, for telling those rules apart."""
    affinity = canary.spec.analysis.session_affinity
    if affinity is None or not affinity.cookie_name:
        return ()
    return tuple(name for name in (affinity.cookie_name, affinity.primary_cookie_name) if name)


def _value(canary: models.Canary, revision: str, side: str = "") -> str:
    seed = f"{canary.metadata.uid or ''}/{canary.namespace}/{canary.name}/{revision}"
    if side:
        seed += f"/{side}"
    return hashlib.sha256(seed.encode()).hexdigest()[:24]


def plan(canary: models.Canary, weights: vocabulary.Weights) -> Plan:
    """Hand the cookie out while the canary has weight; take it back when a run that gave it weight ends.

    ``canary`` is the Canary as the tick found it: when weights go back to the primary, either its status
    still shows the canary's weight (a rollback or the end of promotion) or its phase follows such a run.
    """
    found = cookie(canary)
    if found is None:
        return Plan()
    if weights.canary > 0:
        return Plan(found, sticky=True, primary=primary_cookie(canary))
    status = canary.status
    if status.canary_weight > 0 or status.phase in _AFTER_RUN:
        return Plan(found, sticky=False)
    return Plan()


def status_fields(canary: models.Canary, weights: vocabulary.Weights) -> dict[str, str | None]:
    """The status fields Flagger reports for the cookies, for the routes ``plan`` writes.  As in Flagger, the
    primary's cookie stays reported after the run (it expires by itself)."""
    decided = plan(canary, weights)
    if decided.cookie is None:
        return {}
    if decided.sticky:
        fields: dict[str, str | None] = {"session_affinity_cookie": decided.cookie.pair}
        if decided.primary is not None:
            fields["primary_session_affinity_cookie"] = decided.primary.pair
        return fields
    return {"session_affinity_cookie": None, "previous_session_affinity_cookie": decided.cookie.pair}
