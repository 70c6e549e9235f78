"""status.trackedConfigs holds keyed digests, and a status an older Fledge wrote (unkeyed digests) carries on
without a new revision: the upgrade neither restarts a release nor leaves the unkeyed hash behind."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
from typing import Any

import pytest

from apis import models
from canary.engine import context, observe
from canary.objects import workloads

pytestmark = pytest.mark.unit

KEY = b"digest-key-0123456789abcdef"
NOW = datetime.datetime(2026, 12, 7, 1, 0, tzinfo=datetime.UTC)


def target() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "t", "resourceVersion": "5", "uid": "d1"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:1",
                                                           "envFrom": [{"secretRef": {"name": "db"}}]}]}}}}


def secret(password: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "t", "resourceVersion": "3"},
            "data": {"password": password}}


def canary(status: dict[str, Any]) -> models.Canary:
    return models.parse_canary({
        "apiVersion": "fledge.dev/v1beta1", "kind": "Canary",
        "metadata": {"name": "web", "namespace": "t", "uid": "c-uid-1", "generation": 1},
        "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "provider": "kubernetes", "service": {"port": 80}, "analysis": {"iterations": 2}},
        "status": status})


def context_with(key: bytes, password: str = "aHVudGVyMg==") -> context.Context:
    ctx = context.make(None, context.Settings(config_digest_key=key, default_provider="kubernetes"))
    ctx.cluster.store.upsert(target())
    ctx.cluster.store.upsert(secret(password))
    return ctx


def unkeyed(password: str) -> str:
    """What Fledge wrote before: the first 64 bits of a plain SHA-256 of the data."""
    payload = {"data": {"password": password}, "binaryData": {}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def observed(ctx: context.Context, subject: models.Canary) -> Any:
    return asyncio.run(observe.observe(ctx.cluster, ctx.settings, ctx.memos, subject, NOW)).observed


def test_the_status_digest_is_keyed_and_not_the_plain_hash_of_the_secret() -> None:
    obs = observed(context_with(KEY), canary({}))
    digest = obs.configs["secret/db"]
    assert digest != unkeyed("aHVudGVyMg==")
    # Stable across controller restarts (a new context, the same key), different under another key.
    assert observed(context_with(KEY), canary({})).configs == obs.configs
    assert observed(context_with(b"another-key-0123456789"), canary({})).configs != obs.configs
    # A change of the Secret is still a change.
    assert observed(context_with(KEY, "b3RoZXI="), canary({})).configs != obs.configs


@pytest.mark.parametrize("phase", ["Succeeded", "Progressing", "Initialized"])
def test_a_status_with_unkeyed_digests_is_migrated_without_a_new_revision(phase: str) -> None:
    legacy = {"secret/db": unkeyed("aHVudGVyMg==")}
    old_revision = workloads.revision(target(), legacy)
    old = canary({"phase": phase, "lastAppliedSpec": old_revision, "lastPromotedSpec": old_revision,
                  "trackedConfigs": legacy})
    obs = observed(context_with(KEY), old)
    status = obs.canary.status
    assert status.last_applied_spec == status.last_promoted_spec == obs.revision != old_revision
    assert status.tracked_configs == obs.configs != legacy  # saved by the tick: the unkeyed hash is gone


def test_a_promotion_under_way_at_the_upgrade_finishes_in_the_old_terms() -> None:
    # The primary was stamped with the old revision when the promotion began; the next idle tick migrates.
    legacy = {"secret/db": unkeyed("aHVudGVyMg==")}
    old_revision = workloads.revision(target(), legacy)
    old = canary({"phase": "Promoting", "lastAppliedSpec": old_revision, "lastPromotedSpec": "0" * 16,
                  "trackedConfigs": legacy})
    obs = observed(context_with(KEY), old)
    assert (obs.revision, obs.configs, obs.canary.status) == (old_revision, legacy, old.status)


def test_a_secret_changed_during_the_upgrade_is_a_new_revision() -> None:
    legacy = {"secret/db": unkeyed("b2xk")}  # the status saw other data
    old_revision = workloads.revision(target(), legacy)
    old = canary({"phase": "Succeeded", "lastAppliedSpec": old_revision, "lastPromotedSpec": old_revision,
                  "trackedConfigs": legacy})
    obs = observed(context_with(KEY), old)
    assert obs.canary.status == old.status
    assert obs.revision != old_revision
