"""The New Relic metric provider: an NRQL query over the metric's interval, through the Insights query API or
NerdGraph, as Flagger runs them.

Why this exists: teams whose SLOs live in New Relic gate releases on NRQL, with Flagger's template unchanged.
Which API is chosen by the Secret, as in Flagger:

- ``newrelic_api_key`` (a user key) and ``newrelic_account_id``: NerdGraph, ``POST`` to the address (default
  ``https://api.newrelic.com/graphql``) with the key in ``Api-Key`` and the NRQL as a GraphQL variable;
- else ``newrelic_query_key`` and ``newrelic_account_id``: the Insights API, ``GET
  <address>/v1/accounts/<id>/query?nrql=...`` (default ``https://insights-api.newrelic.com``), the key in
  ``X-Query-Key``.

Either way ``SINCE <interval> seconds ago`` is appended to the query, as Flagger does.

Answers: the one result's number (Insights: ``results[0].result``; NerdGraph: the number in the first object of
``results``); no result, or a null, is ``NoValuesFound``; GraphQL ``errors`` and answers not in New Relic's shape
are ``QueryFailed``; several results are ``QueryFailed`` too (Flagger reads them as "no values": an answer it
cannot tell from another is not evidence of an idle canary).

What it must not do: show the keys or the account's key in a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx

from apis import errors
from metrics import answers, base, http_api

INSIGHTS_ADDRESS = "https://insights-api.newrelic.com"
NERDGRAPH_ADDRESS = "https://api.newrelic.com/graphql"
ACCOUNT_ID = "newrelic_account_id"
QUERY_KEY = "newrelic_query_key"
API_KEY = "newrelic_api_key"
NERDGRAPH_QUERY = "query ($query: Nrql!) { actor { account(id: %s) { nrql(query: $query) { results } } } }"
ONLINE_QUERY = "{ actor { user { name } } }"


def nrql(query: str, interval: float) -> str:
    return f"{query.strip()} SINCE {int(interval)} seconds ago"


def nerdgraph_body(query: str, account: str, interval: float) -> dict[str, Any]:
    return {"query": NERDGRAPH_QUERY % account, "variables": {"query": nrql(query, interval)}}


def insights_value(query: str, answer: Any) -> float:
    if isinstance(answer, dict) and answer.get("error"):
        raise base.QueryFailed(query, f"New Relic refused the query: {str(answer['error'])[:200]}")
    results = answers.field(query, answer, "results", list, "New Relic's answer")

    def read(first: Any) -> float:
        if not isinstance(first, dict):
            raise base.QueryFailed(query, f"New Relic's results[0] is not an object: {first!r:.80}")
        return answers.number(query, first.get("result"), "New Relic's results[0].result")

    return _only(query, results, read)


def nerdgraph_value(query: str, answer: Any) -> float:
    if isinstance(answer, dict) and answer.get("errors"):
        errors = answer["errors"]
        first = errors[0].get("message") if isinstance(errors, list) and isinstance(errors[0], dict) else errors
        raise base.QueryFailed(query, f"NerdGraph refused the query: {str(first)[:200]}")
    node: Any = answers.field(query, answer, "data", dict, "NerdGraph's answer")
    for key in ("actor", "account", "nrql"):
        node = answers.field(query, node, key, dict, f"NerdGraph's data ({key})")
    results = node.get("results")
    if results is None:
        raise base.NoValuesFound(query, "NerdGraph returned no results")
    if not isinstance(results, list):
        raise base.QueryFailed(query, f"NerdGraph's results is not a list: {results!r:.80}")

    def number_in(first: Any) -> float:
        if not isinstance(first, dict):
            raise base.QueryFailed(query, f"NerdGraph's results[0] is not an object: {first!r:.80}")
        numbers = [item for item in first.values() if item is None or isinstance(item, int | float)]
        if len(numbers) > 1:
            raise base.QueryFailed(query, f"NerdGraph's results[0] holds {len(numbers)} values; select one")
        return answers.number(query, numbers[0] if numbers else None, "NerdGraph's results[0]")

    return _only(query, results, number_in)


def _only(query: str, results: list[Any], read: Callable[[Any], float]) -> float:
    if not results:
        raise base.NoValuesFound(query, "New Relic returned no results")
    if len(results) > 1:
        raise base.QueryFailed(query, f"New Relic returned {len(results)} results (a FACET or TIMESERIES query?); "
                                      "a check needs one")
    return read(results[0])


class NewRelicProvider(http_api.Provider):
    def __init__(self, config: base.ProviderConfig, secret: Mapping[str, str] | None, *,
                 timeout: float = base.DEFAULT_TIMEOUT, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.account = http_api.secret_value(secret, ACCOUNT_ID, "newrelic")
        self.interval = config.interval
        self.nerdgraph = bool((secret or {}).get(API_KEY))
        if self.nerdgraph:
            if not self.account.isdigit():
                raise errors.SpecError("spec.provider.secretRef", f"{ACCOUNT_ID} is not a number")
            self._headers = {"Api-Key": http_api.secret_value(secret, API_KEY, "newrelic")}
            default = NERDGRAPH_ADDRESS
        else:
            self._headers = {"X-Query-Key": http_api.secret_value(secret, QUERY_KEY, "newrelic")}
            default = INSIGHTS_ADDRESS
        self.api = http_api.client_for(config, "New Relic", timeout, default=default,
                                       secrets=[*self._headers.values(), self.account], transport=transport)

    def run_query(self, query: str) -> float:
        if self.nerdgraph:
            answer = self.api.send_json(query, "POST", "", headers=self._headers,
                                        json_body=nerdgraph_body(query, self.account, self.interval))
            return nerdgraph_value(query, answer)
        answer = self.api.send_json(query, "GET", f"/v1/accounts/{self.account}/query", headers=self._headers,
                                    params={"nrql": nrql(query, self.interval)})
        return insights_value(query, answer)

    def check_online(self) -> None:
        if self.nerdgraph:
            answer = self.api.send_json("NerdGraph ping", "POST", "", headers=self._headers,
                                        json_body={"query": ONLINE_QUERY})
            if isinstance(answer, dict) and answer.get("errors"):
                raise base.QueryFailed("NerdGraph ping", "NerdGraph answered with errors")
            return
        self.api.send("SELECT * FROM Metric", "GET", f"/v1/accounts/{self.account}/query", headers=self._headers,
                      params={"nrql": nrql("SELECT * FROM Metric", self.interval)})
