"""What the routers that split traffic with a copy of a user's route object share (nginx, skipper, apisix).

Why this exists: these routers never write the user's object (an Ingress, an ApisixRoute); they rebuild their
own copy of it at every write, so a write fails when the user's object has gone or no longer routes to the apex
Service.  Sending all traffic to the primary must never fail that way: a rollback that raises leaves the
traffic split for good.  With all on the primary no copy is needed at all (the user's object routes to the apex
Service, which selects the primary), so then the copy this Canary made is deleted instead; any other split still
needs the user's object, and its SpecError stands.  That rule is here, once.

What it must not do: write or delete the user's object, or delete a copy another Canary or a person made.
"""

from __future__ import annotations

import logging

from apis import errors, models, naming, vocabulary
from routers import base

log = logging.getLogger("fledge.routers")


class CopyRouter(base.CachedRouter):
    """A router whose one route object is ``_build``'s copy of ``_user``'s object, named ``_copy_name``."""

    api_version = ""
    kind = ""

    def _user(self, canary: models.Canary) -> base.Manifest:
        """The user's object; a SpecError naming the reference when it does not exist."""
        raise NotImplementedError

    def _copy_name(self, canary: models.Canary) -> str | None:
        """The copy's name; None when the Canary names no user object."""
        raise NotImplementedError

    def _build(self, canary: models.Canary, user: base.Manifest, weights: vocabulary.Weights) -> base.Manifest:
        """The copy for ``weights``; a SpecError when ``user`` cannot be split."""
        raise NotImplementedError

    def get_routes(self, canary: models.Canary) -> vocabulary.Weights | None:
        raise NotImplementedError

    def _copy(self, canary: models.Canary) -> base.Manifest | None:
        name = self._copy_name(canary)
        return self._store.get(self.api_version, self.kind, canary.namespace, name) if name else None

    def desired(self, canary: models.Canary) -> list[base.Manifest]:
        """The copy with the weights it has (all on the primary when new); SpecError without a usable user
        object."""
        return [self._build(canary, self._user(canary), self.get_routes(canary) or vocabulary.ALL_PRIMARY)]

    async def reconcile(self, canary: models.Canary) -> None:
        """Apply the copy with the weights it has; idempotent.  As ``_write``: all on the primary needs none."""
        await self._write(canary, self.get_routes(canary) or vocabulary.ALL_PRIMARY)

    async def _write(self, canary: models.Canary, weights: vocabulary.Weights) -> None:
        """Apply the copy for ``weights``, or, when that is all on the primary and the user's object is gone or
        cannot be split, delete this Canary's copy: the user's object then serves alone, on the primary."""
        try:
            manifest = self._build(canary, self._user(canary), weights)
        except errors.SpecError as exc:
            if weights != vocabulary.ALL_PRIMARY:
                raise
            if await self._delete_copy(canary):
                log.warning("canary %s/%s: %s; all traffic goes to the primary through the user's object alone, "
                            "so this Canary's %s copy is deleted", canary.namespace, canary.name, exc, self.kind)
            return
        await self._writer.apply(manifest, naming.field_manager(canary))

    async def finalize(self, canary: models.Canary) -> bool:
        """Delete the copy if this Canary made it; the user's object was never changed."""
        await self._delete_copy(canary)
        return False

    async def _delete_copy(self, canary: models.Canary) -> bool:
        """Delete the copy if this Canary made it; whether it did."""
        current = self._copy(canary)
        name = self._copy_name(canary)
        if current is None or not name or not naming.made_for(current, canary):
            return False
        await self._writer.delete(self.api_version, self.kind, canary.namespace, name)
        return True
