"""One analysis step of the judge: its count queries per version, the evidence carried on, the verdicts as checks.

Why this exists: ``metrics.judge`` is pure statistics; something must fetch each version's counts over the
window since the last window counted, continue the evidence the last step left in the Canary's status,
and hand the verdicts to the core as ``vocabulary.Check``s (kind "judge"), whatever went wrong on the way.

What it must not do: decide what a verdict means for the release (the core does: Inconclusive holds, Fail
counts, severe or an exhausted inconclusive limit rolls back), raise for a failed query, or count any
request twice: each window starts exactly where the last one counted ended (``JudgeResult.until``), so the
windows of a release add up to its counts, across failed queries too.

Evidence: the ``status.checks[].judge`` of the same name carries it, whatever this step's outcome: a query
that failed or timed out (unavailable, as for metric checks) leaves a check with verdict "Error" that
carries the last evidence, boundary and window end on, so nothing is restarted.  The canary requests of the
step (for minSamples) and the Inconclusive count start afresh when the step changed (another canary weight
or iteration), not after every Pass: a Pass on a step another check held keeps them.

Level: ``alpha`` is the whole release's; each of the enabled comparisons (errors, latency) gets an equal
share of it, so the probability that either fails a canary no worse than the primary is at most ``alpha``.

Latency: the boundaries (``metrics.histograms.pick_boundaries``: ``latencyQuantile``'s, p90's, p95's) are
picked from the primary's buckets of the first window and kept for the release; that window is not tested
with them (a boundary chosen from the data it tests favours it).  Each boundary is a check and a test of its
own, at the latency comparison's ``alpha`` split evenly over them, so each reads its own ratio: a tail
regression is not diluted, and ``severe`` stays reachable (summing the boundaries' crossings into one test,
tried and reverted, did both).  A version whose
histogram has no bucket at the boundary is a failed check that says so, never "no slow requests".  A window
in which only some of a version's series have it (pods of two builds with other buckets) is Inconclusive,
saying so, and not counted: its sum at the boundary would read some requests as all slow or fast.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import math
from collections.abc import Mapping

import answer_memory
import fairness
from apis import models, vocabulary
from metrics import base, builtin, count_queries, histograms, judge, judge_queries

ERRORS = "judge-errors"
LATENCY = "judge-latency"


# The queries of one version and their answers: ``metrics.judge_queries``.
VectorProvider = judge_queries.VectorProvider
VersionCounts = judge_queries.VersionCounts
Window = judge_queries.Window
render = judge_queries.render


def enabled(spec: models.JudgeSpec) -> list[str]:
    return [name for name, on in ((ERRORS, spec.errors), (LATENCY, spec.latency)) if on]


def config_of(spec: models.JudgeSpec) -> judge.Config:
    """The statistics' configuration of one comparison: ``alpha`` split evenly over the enabled ones."""
    return judge.Config(alpha=spec.alpha / len(enabled(spec)), min_samples=spec.min_samples,
                        tolerance=spec.tolerance, severe=spec.severe, pass_ratio=spec.effective_pass_ratio,
                        inconclusive_limit=spec.inconclusive_limit, robust=spec.burst_robust,
                        negligible=spec.negligible)


def step_of(canary: models.Canary) -> str:
    """The step being analysed: it changes when the release advances, and only then."""
    return f"weight {canary.status.canary_weight}, iteration {canary.status.iterations}"


def last_result(canary: models.Canary, name: str) -> models.JudgeResult | None:
    return next((c.judge for c in canary.status.checks if c.name == name and c.judge is not None), None)


def window_of(canary: models.Canary, name: str, now: datetime.datetime) -> Window:
    """From the end of the last window the comparison ``name`` counted, else the last step, else one interval
    ago.  Each comparison keeps its own: one whose queries failed starts further back than the other."""
    last = last_result(canary, name)
    if last is not None and last.until:
        start = models.parse_time(last.until)
    elif canary.status.last_step_time:
        start = models.parse_time(canary.status.last_step_time)
    else:
        start = now - datetime.timedelta(seconds=canary.spec.analysis.interval_seconds)
    return Window(start=min(start, now), end=now)


def previous(canary: models.Canary, name: str, config: judge.Config) -> tuple[judge.Evidence, float | None]:
    """The evidence and latency boundary the last step left in status; fresh evidence when there is none
    (or it was kept for another tolerance or severe).  A changed step restarts the step's counts."""
    result = last_result(canary, name)
    if result is None or not result.log_likelihood:
        return judge.Evidence.start(config), None
    evidence = judge.Evidence(
        log_likelihood=tuple(result.log_likelihood), null=result.null_ratio, severe=result.severe_ratio,
        canary=judge.Counts(result.canary_requests, result.canary_events),
        primary=judge.Counts(result.primary_requests, result.primary_events), step_samples=result.step_samples,
        inconclusive=result.inconclusive, wealth_up=tuple(result.log_wealth_up),
        # A status written before the dispersion was kept: its windows start counting now.
        pearson=tuple(result.pearson) or (0.0,) * len(result.log_likelihood), windows=result.windows,
        one_sided=result.one_sided_windows)
    if result.step != step_of(canary):
        evidence = judge.advanced(evidence)
    if not evidence.fits(config):
        return judge.Evidence.start(config), None
    return evidence, result.boundary


def judge_check(name: str, judgement: judge.Judgement, config: judge.Config, *, window: Window,
                queries: list[str], boundary: float | None, step: str, prefix: str = "") -> vocabulary.Check:
    """A verdict as a vocabulary.Check, with every number a person needs in status."""
    evidence = judgement.evidence
    spread = judge.dispersion(evidence) if config.robust else None

    def finite(value: float | None) -> float | None:
        return value if value is not None and math.isfinite(value) else None

    result = models.JudgeResult(
        verdict=judgement.verdict, severe=judgement.severe, limit_reached=judgement.limit_reached,
        inconclusive=evidence.inconclusive, effect=finite(judgement.effect),
        lower=judgement.lower, upper=judgement.upper, e_value=round(min(judgement.e_value, 1e300), 6),
        canary_requests=evidence.canary.requests, canary_events=evidence.canary.events,
        primary_requests=evidence.primary.requests, primary_events=evidence.primary.events,
        step_samples=evidence.step_samples, boundary=boundary, window=window.text(), queries=queries,
        until=models.format_time(window.end), step=step, null_ratio=config.null, severe_ratio=config.severe,
        log_likelihood=[round(v, 6) for v in evidence.log_likelihood],
        log_wealth_up=[round(v, 6) for v in evidence.wealth_up],
        pearson=[round(v, 6) for v in evidence.pearson], windows=evidence.windows,
        one_sided_windows=evidence.one_sided,
        dispersion=None if spread is None else round(spread, 6))
    # An exhausted limit says so first: the rollback message is built from it.
    message = (judgement.reason + (f"; {prefix.rstrip('; ')}" if prefix else "") if judgement.limit_reached
               else prefix + judgement.reason)
    return vocabulary.Check(name=name, kind="judge", passed=judgement.verdict == "Pass", value=finite(judgement.effect),
                            max=config.null, message=message, judge=result)


def carried(canary: models.Canary, name: str, window: Window, message: str, *, unavailable: bool
            ) -> vocabulary.Check:
    """A check whose queries failed: no verdict, the last evidence and window end carried on unchanged."""
    last = last_result(canary, name)
    if last is None:
        last = models.JudgeResult(verdict="Error", until=models.format_time(window.start), step=step_of(canary))
    result = last.model_copy(update={"verdict": "Error", "severe": False, "limit_reached": False,
                                     "window": None})
    return vocabulary.Check(name=name, kind="judge", passed=False, unavailable=unavailable, message=message,
                            judge=result)


async def run_judge(canary: models.Canary, provider: base.MetricProvider, *, router_provider: str,
                    now: datetime.datetime, timeout: float = 10.0, pod_labels: builtin.PodLabels | None = None,
                    shares: fairness.Shares | None = None) -> list[vocabulary.Check]:
    """The judge's checks of this step, in order errors, latency.  Never raises for a query.

    ``pod_labels`` names the pod-scrape labels of the gatewayapi and kubernetes count queries, as for the
    builtin metrics (the controller's ``--pod-namespace-label`` and ``--pod-name-label``).  A version's queries
    that get no answer within ``timeout`` seconds are unavailable, as a metric's are; each version's queries
    hold one of the namespace's ``shares`` (one thread) while they run."""
    spec = canary.spec.analysis.judge
    if spec is None:
        return []
    names = enabled(spec)
    queries = count_queries.count_queries(router_provider)
    if queries is None:
        return [vocabulary.Check(name=n, kind="judge", passed=False, message=f"spec.analysis.judge: Fledge has no "
                                 f"count queries for provider {router_provider!r}") for n in names]
    # Every check this step makes: latency has one per boundary the release's first window picked.
    names = [n for e in names for n in (latency_names(canary) if e == LATENCY else [e])]
    windows = {n: window_of(canary, n, now) for n in names}
    window = windows.get(ERRORS) or windows[LATENCY]  # the requests' and errors' window
    rendered: dict[str, tuple[str, str, str, str]] = {}
    for v in ("canary", "primary"):
        own = render(canary, queries, router_provider, v, window, pod_labels)
        if spec.latency and windows[LATENCY] != window:
            own = (*own[:2], *render(canary, queries, router_provider, v, windows[LATENCY], pod_labels)[2:])
        rendered[v] = own
    try:
        counts = await asyncio.gather(
            *(fairness.run_in_thread(shares, canary.namespace, timeout, answer_memory.queries, canary.namespace,
                                     judge_queries.fetch, provider, rendered[v], spec.latency, timeout)
              for v in ("canary", "primary")))
    except base.ProviderUnavailable as exc:
        return [carried(canary, n, windows[n], str(exc), unavailable=True) for n in names]
    except fairness.Busy as exc:
        return [carried(canary, n, windows[n], f"metrics server unavailable for the judge: not run within "
                        f"{timeout:g}s: {exc}", unavailable=True) for n in names]
    except TimeoutError:
        return [carried(canary, n, windows[n], f"metrics server unavailable for the judge: no answer within "
                        f"{timeout:g}s", unavailable=True) for n in names]
    except base.QueryError as exc:
        return [carried(canary, n, windows[n], f"query failed: {exc}", unavailable=False) for n in names]
    ours, theirs = counts
    config = config_of(spec)
    step = step_of(canary)
    quiet = "" if ours.requests or theirs.requests else (
        f"no new samples in the {window.text()} since the last window (no traffic, or a window shorter than the "
        "scrape interval: what it missed counts in the next); ")
    checks: list[vocabulary.Check] = []
    if spec.errors:
        texts = [rendered["canary"][1], rendered["primary"][1]]
        try:
            canary_counts = judge.Counts.of(ours.requests, ours.errors)
            primary_counts = judge.Counts.of(theirs.requests, theirs.errors)
        except ValueError as exc:
            checks.append(carried(canary, ERRORS, window, f"the judge's counts are not counts: {exc}; queries: "
                                  f"{'; '.join(base.short(t) for t in texts)}", unavailable=False))
        else:
            evidence, _ = previous(canary, ERRORS, config)
            evidence = judge.update(evidence, canary_counts, primary_counts, config)
            judgement, note = _verdict(evidence, config, "error proportion", canary_counts, primary_counts)
            checks.append(judge_check(ERRORS, judgement, config, window=window, queries=texts,
                                      boundary=None, step=step, prefix=quiet + note))
    if spec.latency:
        checks += _latencies(canary, spec, config, ours, theirs, windows[LATENCY], step, rendered, quiet)
    return checks


def latency_name(quantile: float, spec: models.JudgeSpec) -> str:
    """The check of one latency boundary: ``judge-latency`` for ``latencyQuantile``'s, ``judge-latency-p90``
    for the extra boundary of the primary's p90."""
    return LATENCY if quantile == spec.latency_quantile else f"{LATENCY}-p{quantile * 100:g}"


def latency_names(canary: models.Canary) -> list[str]:
    """``judge-latency`` and the checks of the extra boundaries the release's first window picked."""
    extra = [c.name for c in canary.status.checks if c.kind == "judge" and c.name.startswith(LATENCY + "-")]
    return [LATENCY, *extra]


def _latencies(canary: models.Canary, spec: models.JudgeSpec, config: judge.Config, ours: VersionCounts,
               theirs: VersionCounts, window: Window, step: str, rendered: Mapping[str, tuple[str, str, str, str]],
               quiet: str) -> list[vocabulary.Check]:
    """One check per boundary, each its own test at the latency comparison's ``alpha`` split evenly over
    the boundaries: a Fail (or severe) at any boundary is one, and a Pass needs every one."""
    texts = [rendered["canary"][2], rendered["primary"][2]]
    names = latency_names(canary)
    bad = [f"the {v}'s {why}" for v, c in (("canary", ours), ("primary", theirs))
           if (why := histograms.not_counts(c.buckets, c.series)) is not None]
    if bad:
        # Never a boundary picked or an exceedance counted from them; the evidence is carried, and the next
        # window counts again (a failed check, so the release cannot be held on it past its threshold).
        return [carried(canary, n, window, f"the judge's latency counts are not counts: {'; '.join(bad)}; "
                        f"queries: {'; '.join(base.short(t) for t in texts)}", unavailable=False) for n in names]
    kept = {n: previous(canary, n, config) for n in names}
    if kept[LATENCY][1] is None:
        return _pick(spec, config, kept[LATENCY][0], theirs, window, step, texts, quiet)
    boundaries = {n: b for n, (_, b) in kept.items() if b is not None}
    split = dataclasses.replace(config, alpha=config.alpha / len(boundaries))
    try:
        slow = {(n, v): histograms.exceedance(c.buckets, b) for n, b in boundaries.items()
                for v, c in (("canary", ours), ("primary", theirs))}
    except ValueError as exc:  # more requests at or below a boundary than in all: not counts
        return [carried(canary, n, window, f"the judge's latency counts are not counts: {exc}; queries: "
                        f"{'; '.join(base.short(t) for t in texts)}", unavailable=False) for n in boundaries]
    missing = sorted({(v, boundaries[n]) for (n, v), c in slow.items() if c is None})
    if missing:
        lacks = "; ".join(f"the {v} latency histogram has no bucket le={b:g}" for v, b in missing)
        return [carried(canary, n, window, f"{lacks} (canary buckets {_les(ours)}, primary {_les(theirs)}): the "
                        "versions cannot be compared; give both the same buckets or set judge.latency: false",
                        unavailable=False) for n in boundaries]
    mixed = [(v, b, m) for b in boundaries.values() for v, c in (("canary", ours), ("primary", theirs))
             if (m := histograms.partial(c.series, b)) is not None]
    if mixed:
        # Counting it would read some pods' requests as all slow (or the canary as fast): this window's latency
        # is not counted, and it is no Pass; the next window starts after it, once the old series are gone.
        said = "; ".join(f"only {m[0]} of the {m[1]} {v} series counted in this window have a bucket le={b:g}"
                         for v, b, m in mixed)
        why = (f"mixed latency buckets: {said} (pods with other buckets, such as an earlier build's, are "
               f"still in the window; canary buckets {_les(ours)}, primary {_les(theirs)}): the window's "
               f"latency is not compared")
        return [judge_check(n, judge.held(kept[n][0], split, why), split, window=window, queries=texts,
                            boundary=b, step=step, prefix=quiet) for n, b in boundaries.items()]
    checks = []
    for n, b in boundaries.items():
        canary_slow, primary_slow = slow[(n, "canary")], slow[(n, "primary")]
        assert canary_slow is not None and primary_slow is not None
        evidence = judge.update(kept[n][0], canary_slow, primary_slow, split)
        judgement, note = _verdict(evidence, split, f"proportion slower than le={b:g}", canary_slow, primary_slow)
        checks.append(judge_check(n, judgement, split, window=window, queries=texts, boundary=b, step=step,
                                  prefix=quiet + note))
    return checks


def _pick(spec: models.JudgeSpec, config: judge.Config, evidence: judge.Evidence, theirs: VersionCounts,
          window: Window, step: str, texts: list[str], quiet: str) -> list[vocabulary.Check]:
    """The boundaries, picked from the primary's buckets of this window, which none of them tests."""
    picked = histograms.pick_boundaries(theirs.buckets, spec.latency_quantile, theirs.series)
    if not picked:
        return [judge_check(LATENCY, judge.judge(evidence, config, "latency"), config, window=window, queries=texts,
                            boundary=None, step=step, prefix=quiet or "no boundary: the primary's requests all "
                            "fall in one bucket, or there are none; ")]
    split = dataclasses.replace(config, alpha=config.alpha / len(picked))
    les = ", ".join(f"le={le:g} (p{q * 100:g})" for q, le in picked)
    prefix = (f"{quiet}boundaries {les} picked from the primary's buckets of this window, each tested at "
              f"alpha/{len(picked)}; the comparison starts with the next; ")
    return [judge_check(latency_name(q, spec), judge.judge(evidence if q == spec.latency_quantile else
                                                           judge.Evidence.start(split), split,
                                                           f"proportion slower than le={le:g}"),
                        split, window=window, queries=texts, boundary=le, step=step, prefix=prefix)
            for q, le in picked]


def _verdict(evidence: judge.Evidence, config: judge.Config, what: str, ours: judge.Counts,
             theirs: judge.Counts) -> tuple[judge.Judgement, str]:
    """The verdict on the evidence after a window with counts ``ours`` and ``theirs``, and what to say first
    about the window: one in which only one version served compares nothing, and its analysis is no Pass
    (the evidence of earlier windows would otherwise pass requests nobody compared)."""
    judgement = judge.judge(evidence, config, what)
    alone = judge.alone(ours, theirs)
    if alone is None:
        return judgement, ""
    other = "primary" if alone == "canary" else "canary"
    served = (ours if alone == "canary" else theirs).requests
    note = (f"only the {alone} served in this window ({served} requests, none from the {other}, or the "
            f"{other} was not scraped): it compares nothing and is not counted ({evidence.one_sided} such "
            f"windows in this release); ")
    if judgement.verdict == "Pass":
        judgement = judge.held(evidence, config, "no Pass after a window that compared nothing, though the "
                               f"earlier windows would pass: {judgement.reason}")
    return judgement, note


def _les(counts: VersionCounts) -> list[float]:
    return sorted(le for le in counts.buckets if math.isfinite(le))
