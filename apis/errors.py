"""Fledge's exceptions.

Why this exists: one tree of errors that the handler edge (``canary.controller.handlers``)
turns into kopf's ``TemporaryError`` (retry later) or a status message
(``PermanentError`` semantics: wait for the user to fix the spec).  Nothing
below the handlers imports kopf.

    FledgeError
    ├── RetriableError              try again on the next tick
    │   ├── TargetNotReady          a Deployment has not rolled out yet
    │   ├── CacheBehind             an object exists that the watch cache has not seen yet
    │   └── ProviderUnavailable     Prometheus or another provider did not answer
    └── FatalError                  nothing changes until the user edits something
        ├── SpecError               the Canary (or a template it names) is invalid; names the field
        └── MissingTarget           spec.targetRef names no existing Deployment

A failed metric query is not an exception: it is a ``core.Check`` that did not
pass, handed to the decision core like any other observation.
"""

from __future__ import annotations

from collections.abc import Sequence


class FledgeError(Exception):
    """Base of every error Fledge raises on purpose."""


class RetriableError(FledgeError):
    pass


class TargetNotReady(RetriableError):
    pass


class ProviderUnavailable(RetriableError):
    pass


class CacheBehind(RetriableError):
    """Creating an object the cache lacked found it there already: look again once the cache has it."""


class FatalError(FledgeError):
    pass


class SpecError(FatalError, ValueError):
    """An invalid field; ``str()`` reads ``<field>: <what is wrong and what to do>``."""

    def __init__(self, field: str, message: str, details: Sequence[tuple[str, str]] = ()) -> None:
        self.field = field
        self.message = message
        # Every problem found, the first included, so a status can list them all.
        self.details: tuple[tuple[str, str], ...] = tuple(details) or ((field, message),)
        text = f"{field}: {message}"
        if len(self.details) > 1:
            text += f" (and {len(self.details) - 1} more: " + "; ".join(f"{f}: {m}" for f, m in self.details[1:])
            text += ")"
        super().__init__(text)


class MissingTarget(FatalError):
    pass
