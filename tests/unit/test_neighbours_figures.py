"""The noisy-neighbour benchmark's pure parts (benchmarks/neighbours.py): which writes in an audit log were sent
by a replica that did not hold the Lease, the heavy template staying within the sandbox's budget, and the
verdict lines read off the two runs' figures."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from benchmarks import neighbours
from metrics import sandbox

pytestmark = pytest.mark.unit

LEASE = {"resource": "leases", "namespace": "fledge-system", "name": "fledge-noisy"}
T0 = datetime.datetime(2026, 12, 7, 12, 0, tzinfo=datetime.UTC)
_ids = iter(range(10**6))


def event(user: str, verb: str, at: float, ref: dict[str, str], code: int = 200,
          stage: str = "ResponseComplete", audit_id: str = "") -> dict[str, Any]:
    stamp = (T0 + datetime.timedelta(seconds=at)).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return {"auditID": audit_id or f"id-{next(_ids)}", "stage": stage, "verb": verb, "user": {"username": user},
            "objectRef": ref, "responseStatus": {"code": code}, "requestReceivedTimestamp": stamp,
            "stageTimestamp": stamp}


def status_patch(user: str, at: float, code: int = 200) -> dict[str, Any]:
    return event(user, "patch", at, {"resource": "canaries", "namespace": "n-000", "name": "app"}, code)


def unfenced(events: list[dict[str, Any]], duration: float = 8.0) -> list[neighbours.Write]:
    return neighbours.writes_without_lease(events, ("a", "b"), "fledge-system", "fledge-noisy", duration)


def test_writes_of_the_holder_within_the_lease_duration_count_for_nothing() -> None:
    events = [event("a", "create", 0, LEASE, 201), status_patch("a", 1), event("a", "update", 6, LEASE),
              status_patch("a", 13.9), event("a", "get", 20, LEASE)]
    assert unfenced(events) == []


def test_a_write_after_the_holders_lease_expired_counts() -> None:
    events = [event("a", "update", 0, LEASE), status_patch("a", 9)]
    [write] = unfenced(events)
    assert (write.user, write.what) == ("a", "patch canaries n-000/app")


def test_once_another_replica_took_the_lease_the_old_holders_writes_count_even_within_its_old_lease() -> None:
    events = [event("a", "update", 0, LEASE), event("b", "update", 2, LEASE), status_patch("b", 3),
              status_patch("a", 4)]
    assert [w.user for w in unfenced(events)] == ["a"]


def test_a_follower_that_never_held_the_lease_counts_for_every_write_but_not_its_refused_lease_attempts() -> None:
    events = [event("a", "update", 0, LEASE), event("b", "update", 1, LEASE, code=409), status_patch("b", 2),
              event("b", "create", 3, {"resource": "events", "namespace": "n-000", "name": "x"}, code=201)]
    assert [w.what.split()[1] for w in unfenced(events)] == ["canaries", "events"]


def test_a_refused_write_counts_too_it_was_sent() -> None:
    events = [event("a", "update", 0, LEASE), event("b", "update", 1, LEASE), status_patch("a", 2, code=409)]
    assert len(unfenced(events)) == 1


def test_each_request_counts_once_and_other_users_and_other_leases_are_ignored() -> None:
    other_lease = {**LEASE, "name": "fledge-quiet"}
    events = [event("a", "update", 0, LEASE),
              event("b", "patch", 1, {"resource": "canaries"}, stage="ResponseStarted", audit_id="x"),
              event("b", "patch", 1, {"resource": "canaries"}, audit_id="x"),
              event("b", "update", 2, other_lease),
              status_patch("admin", 3)]
    assert [(w.user, w.what.split()[1]) for w in unfenced(events)] == [("b", "canaries"), ("b", "leases")]


def test_events_are_taken_in_the_order_the_api_server_received_them() -> None:
    events = [status_patch("b", 5), event("b", "update", 4, LEASE), event("a", "update", 0, LEASE)]
    assert unfenced(events) == []


def test_the_heavy_template_renders_within_the_sandboxs_budget() -> None:
    template = sandbox.BoundedSandbox(autoescape=False).bounded_template(neighbours.HEAVY_QUERY)
    with sandbox.bounded():
        assert template.render().endswith("vector(1)")


def figures(**changes: Any) -> dict[str, Any]:
    base = {"late_p50_s": 0.1, "late_p99_s": 1.0, "release_over_ideal": 1.2, "rolled_back": 0,
            "peak_rss_mib": 100.0, "writes_without_lease": 0}
    return {**base, **changes}


def test_verdicts_judge_ticks_as_interval_plus_lateness_and_name_each_target() -> None:
    lines = neighbours.verdicts(figures(), figures(late_p50_s=0.9, late_p99_s=2.1, peak_rss_mib=149.0), 10)
    met = {what.split(" within")[0].split(" of")[0]: ok for what, ok, _ in lines}
    assert met == {"ordinary canaries' per-tick time p50 (interval + lateness)": True,
                   "ordinary canaries' per-tick time p99 (interval + lateness)": True,
                   "ordinary canaries' release time / ideal": True, "no ordinary canary rolled back": True,
                   "controller peak RSS": True, "0 writes without the Lease": True}


def test_verdicts_say_not_met_when_a_figure_is_past_its_target() -> None:
    lines = neighbours.verdicts(figures(), figures(release_over_ideal=1.4, rolled_back=2, peak_rss_mib=151.0,
                                                   writes_without_lease=1), 10)
    assert [what for what, ok, _ in lines if not ok] == [
        "ordinary canaries' release time / ideal within 10 % of the quiet run", "no ordinary canary rolled back",
        "controller peak RSS within 1.5x of the quiet run", "0 writes without the Lease"]


def test_a_lateness_with_no_step_measured_is_not_met() -> None:
    lines = neighbours.verdicts(figures(), figures(late_p50_s=float("nan"), late_p99_s=float("nan")), 10)
    assert [shown for what, ok, shown in lines if not ok] == ["nan vs 0.10 (no step measured)",
                                                             "nan vs 1.00 (no step measured)"]
