"""``fledge promote|abort|retry|pause|resume NAME``: an operator's hand on a release, through the API server.

Why this exists: operators must be able to end a release early, stop a bad one
now, run a failed one again, or hold one still, with their own kubeconfig and
RBAC (as kubectl does; ``kubectl fledge ...`` runs the same commands as a
kubectl plugin), and the cluster must remember who did it.

One rule, one place: these commands never write routes or status.  They write
a request on the Canary (``canary.core.requests``: an annotation, by merge patch, so a
GitOps tool that owns the spec has nothing to fight) and record a Kubernetes
Event naming who asked; the controller's decision core acts on the request at
its next tick, once, and records the outcome in ``status.lastHandledRequest``.
Without ``--no-wait`` the command waits for that outcome and prints it.

Who asked is the identity the API server authenticated (a SelfSubjectReview);
where that API is not served or allowed, the kubeconfig's user name.

What it must not do: decide whether a request makes sense in the Canary's
phase (the core does, and says so), or write anything but the annotation and
the Event.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
import time
import uuid
from typing import Any

from canary import core
from canary.cli import client
from canary.cluster import kube
from canary.core import requests

REVIEW_PATH = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
MERGE_PATCH = "application/merge-patch+json"
# What a request asks for, as the Event's reason.
REASONS = {"promote": "PromoteRequested", "abort": "AbortRequested", "retry": "RetryRequested",
           "pause": "PauseRequested", "resume": "ResumeRequested"}


def whoami(api: Any, kubeconfig: str | None) -> str:
    """The user the API server authenticates; the kubeconfig's user name where SelfSubjectReview is not served."""
    from kubernetes.client.exceptions import ApiException

    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    try:
        answer = kube.request(api, "POST", REVIEW_PATH, review)
        name = ((answer.get("status") or {}).get("userInfo") or {}).get("username")
        if name:
            return str(name)
    except ApiException:
        pass  # an older API server, or RBAC without the review: the kubeconfig still names a user
    return str(client.kubeconfig_context(kubeconfig).get("user") or "unknown")


def annotate(api: Any, namespace: str, name: str, annotations: dict[str, str | None]) -> dict[str, Any]:
    """Merge-patch the Canary's annotations (None removes one); nothing else of the object is sent."""
    return kube.request(api, "PATCH", client.canary_path(namespace, name), {"metadata": {"annotations": annotations}},
                        content_type=MERGE_PATCH)


def record_event(api: Any, body: dict[str, Any], reason: str, message: str, now: datetime.datetime) -> None:
    meta = body["metadata"]
    event = kube.event(meta["namespace"], meta["name"], meta.get("uid", ""), "Normal", reason, message, now,
                       "fledge-cli")
    kube.request(api, "POST", kube.resource_for("v1", "Event").path(meta["namespace"]), event)


@dataclasses.dataclass(frozen=True)
class _Hand:
    """Who acts on which Canary, and when."""

    api: Any
    namespace: str
    name: str
    body: dict[str, Any]
    user: str
    now: datetime.datetime


def _reach(args: argparse.Namespace) -> _Hand | None:
    """The Canary the command names and who runs it; None (having said so) when the Canary does not exist."""
    reached = client.reach(args)
    if reached is None:
        return None
    api, namespace, body = reached
    return _Hand(api, namespace, args.name, body, whoami(api, args.kubeconfig), datetime.datetime.now(datetime.UTC))


def _write(hand: _Hand, action: str, annotations: dict[str, str | None], message: str) -> None:
    """Write the annotations, record the Event that says ``message``, and print it."""
    annotate(hand.api, hand.namespace, hand.name, annotations)
    record_event(hand.api, hand.body, REASONS[action], message, hand.now)
    print(message)


def act(args: argparse.Namespace) -> int:
    """promote, abort, retry: write the request and its Event, then (unless --no-wait) print the outcome."""
    hand = _reach(args)
    if hand is None:
        return 1
    request = core.Request(action=args.action, id=str(uuid.uuid4()), by=hand.user, at=core.format_time(hand.now))
    _write(hand, args.action, {requests.REQUEST: requests.encode(request)},
           f"{args.action} of {hand.namespace}/{hand.name} requested by {hand.user} (request {request.id})")
    if args.no_wait:
        return 0
    return wait_outcome(hand.api, hand.namespace, hand.name, request.id, args.timeout)


def wait_outcome(api: Any, namespace: str, name: str, request_id: str, timeout: float) -> int:
    """0 when the controller carried the request out, 1 when it refused it (and why), 2 when it did not answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (client.get_canary(api, namespace, name) or {}).get("status") or {}
        handled = status.get("lastHandledRequest") or {}
        if handled.get("id") == request_id:
            verdict = "done" if handled.get("accepted") else "refused"
            print(f"{verdict}: {handled.get('message') or status.get('phase')}")
            return 0 if handled.get("accepted") else 1
        time.sleep(0.5)
    print(f"the controller has not handled request {request_id} within {timeout:.0f}s; it stays on the Canary "
          f"and is acted on when the controller runs (see `fledge status {name} -n {namespace}`)", file=sys.stderr)
    return 2


def pause(args: argparse.Namespace) -> int:
    """pause, resume: set or remove the paused annotation, and record who did it."""
    hand = _reach(args)
    if hand is None:
        return 1
    verb = "paused" if args.action == "pause" else "resumed"
    _write(hand, args.action, {requests.PAUSED: "true" if args.action == "pause" else None},
           f"{hand.namespace}/{hand.name} {verb} by {hand.user}")
    return 0
