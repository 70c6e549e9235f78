"""Flagger's documented MetricTemplates of each provider, unchanged but for apiVersion (and the address and
names of this environment), gate real releases on the local control plane: one Canary per provider whose metric
is within range is promoted, one whose metric is out of range is rolled back.

The back-ends are real where one runs here: KeptnMetric objects on the local API server (their status written
as Keptn's metrics operator writes it), the external metrics API served through the kube-apiserver's
aggregator by an APIService (``metric_servers.ExternalMetrics``), and Debian's Graphite (carbon-cache and
graphite-web, ``localkube.graphite``) fed by a reporter thread as an application's StatsD would. InfluxDB is
InfluxDB 1.8 with Flux (``localkube.influxdb``, built from its Go module), fed with Istio's request counter as
line protocol; Flagger's documented query names its namespace tag with a leading space
(``r[" destination_workload_namespace"]``), which matches no real tag, so the real server gets the query without
that space, and a contract server (``tests.contract.influxdb``) of InfluxDB 2's API gets it word for word.
SkyWalking is a contract server of its OAP's GraphQL API
(``tests.contract.skywalking``), AppDynamics Cloud one of its token endpoint and query service
(``tests.contract.appdynamicscloud``).

The servers start once for the module; every Canary runs at the same time under the one shared controller.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment, graphite, influxdb
from localkube import manifests as kubectl
from tests.contract import appdynamicscloud as appd_contract
from tests.contract import influxdb as influxdb_contract
from tests.contract import server as contract_server
from tests.contract import skywalking as skywalking_contract
from tests.integration import apps, metric_servers

pytestmark = pytest.mark.integration

ANALYSIS: dict[str, Any] = {"interval": "3s", "threshold": 2, "maxWeight": 40, "stepWeight": 20}


@pytest.fixture(scope="module")
def external(env: environment.Environment, api: Any) -> Iterator[metric_servers.ExternalMetrics]:
    with metric_servers.external_metrics(env, api) as served:
        yield served


@pytest.fixture(scope="module")
def keptn_crd(api: Any) -> None:
    metric_servers.install_keptn_metric_crd(api)


@pytest.fixture(scope="module")
def graphite_server(env: environment.Environment) -> Iterator[graphite.Graphite]:
    server = graphite.start(env)
    yield server
    graphite.stop(env, server)


class Reporter:
    """What a Spring Boot app's StatsD reporting leaves in Graphite: request counts by outcome, every second."""

    PATH = "stats.timers.httpServerRequests.app.{app}.exception.None.method.GET.outcome.{outcome}.status.{status}" \
           ".uri.root.count"

    def __init__(self, server: graphite.Graphite, apps: dict[str, tuple[float, float]]) -> None:
        self.server, self.apps = server, apps  # app -> (successful, failed) requests a second
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reporter:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            points = []
            for app, (ok, failed) in self.apps.items():
                points.append((self.PATH.format(app=app, outcome="SUCCESS", status=200), ok, now))
                points.append((self.PATH.format(app=app, outcome="SERVER_ERROR", status=500), failed, now))
            self.server.send(points)
            self._stop.wait(0.5)


# Flagger's documented Graphite template, word for word.
GRAPHITE_DOC_QUERY = """target=summarize(
  asPercent(
    sumSeries(
      stats.timers.httpServerRequests.app.{{target}}.exception.*.method.*.outcome.{CLIENT_ERROR,INFORMATIONAL,REDIRECTION,SUCCESS}.status.*.uri.*.count
    ),
    sumSeries(
      stats.timers.httpServerRequests.app.{{target}}.exception.*.method.*.outcome.*.status.*.uri.*.count
    )
  ),
  {{interval}},
  'avg'
)"""
# The same with the interval quoted, which Graphite 1.1 needs (it reads an unquoted 1m, 60s or 1min as a
# number and divides by zero), and an interval in Graphite's units ('1m' is not one of them: '60s' or '1min').
GRAPHITE_QUERY = GRAPHITE_DOC_QUERY.replace("{{interval}},", "'{{interval}}',")


INFLUX_TOKEN, INFLUX_ORG = "influx-t0ken-for-tests", "acme"
# Flagger's documented InfluxDB template's query, word for word.
INFLUX_QUERY = """from(bucket: "default")
|> range(start: -2h)
|> filter(fn: (r) => r["_measurement"] == "istio_requests_total")
|> filter(fn: (r) => r[" destination_workload_namespace"] == "{{ namespace }}")
|> filter(fn: (r) => r["destination_workload"] == "{{ target }}")
|> filter(fn: (r) => r["response_code"] == "500")
|> count()
|> yield(name: "count")"""


@pytest.fixture(scope="module")
def influx() -> Iterator[tuple[contract_server.ContractServer, contract_server.Answers]]:
    """InfluxDB 2's query API as a contract: Debian's InfluxDB 1.6 has no Flux endpoint (README)."""
    answers = contract_server.Answers()
    with contract_server.ContractServer(influxdb_contract.contract(answers, token=INFLUX_TOKEN,
                                                                   org=INFLUX_ORG)) as served:
        yield served, answers


# Flagger's documented query without the typo of its namespace tag: what a user of a real InfluxDB writes.
INFLUX_REAL_QUERY = INFLUX_QUERY.replace('r[" destination_workload_namespace"]', 'r["destination_workload_namespace"]')


@pytest.fixture(scope="module")
def influx_real(env: environment.Environment) -> Iterator[influxdb.InfluxDB]:
    server = influxdb.start(env)
    server.create_database("default")
    yield server
    influxdb.stop(env, server)


def feed_influx(server: influxdb.InfluxDB, namespace: str, errors: dict[str, int]) -> None:
    """``errors[target]`` HTTP 500 requests of each target within the last minutes, and as many 200s."""
    now = int(time.time())
    lines = [f"istio_requests_total,destination_workload_namespace={namespace},destination_workload={target},"
             f"response_code={code} value=1 {now - 120 + second}"
             for target, count in errors.items() for code in ("500", "200") for second in range(count)]
    server.write("default", lines)


# The query of Flagger's skywalking provider tests: the apdex of a service over the metric's interval.
SKYWALKING_QUERY = """query queryData($duration: Duration!) {
  service_apdex: readMetricsValues(
    condition: { name: "service_apdex", entity: { scope: Service, serviceName: "agent::{{ target }}", normal: true } },
    duration: $duration) { label values { values { value } } }
}"""


@pytest.fixture(scope="module")
def skywalking() -> Iterator[tuple[contract_server.ContractServer, contract_server.Answers]]:
    answers = contract_server.Answers()
    with contract_server.ContractServer(skywalking_contract.contract(answers)) as served:
        yield served, answers


APPD_TENANT, APPD_CLIENT, APPD_SECRET = "tenant-0f1e", "fledge-client", "appd-client-s3cret"
APPD_QUERY = ("fetch errorRate: metrics(apm:error_rate) from entities(apm:service)"
              "[attributes(service.name) = '{{ target }}'] since -{{ interval }}")


@pytest.fixture(scope="module")
def appd() -> Iterator[tuple[contract_server.ContractServer, contract_server.Answers]]:
    answers = contract_server.Answers()
    with contract_server.ContractServer(appd_contract.contract(answers, tenant=APPD_TENANT, client_id=APPD_CLIENT,
                                                               client_secret=APPD_SECRET)) as served:
        yield served, answers


def template(namespace: str, name: str, provider: dict[str, Any], query: str) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"provider": provider, "query": query}}


def release(api: Any, namespace: str, name: str, metric: dict[str, Any]) -> None:
    """v1 and its Canary, analysing only ``metric``."""
    kubectl.apply(api, apps.deployment(namespace, name, "1"))
    kubectl.apply(api, apps.canary(namespace, name, analysis={**ANALYSIS, "metrics": [metric]}))


def test_flagger_templates_gate_releases_on_real_servers(
        env: environment.Environment, api: Any, namespace: str, controller: local_controller.Controller,
        external: metric_servers.ExternalMetrics, keptn_crd: None, graphite_server: graphite.Graphite,
        influx: tuple[contract_server.ContractServer, contract_server.Answers], influx_real: influxdb.InfluxDB,
        skywalking: tuple[contract_server.ContractServer, contract_server.Answers],
        appd: tuple[contract_server.ContractServer, contract_server.Answers]) -> None:
    # keptn: the documented template reads a KeptnMetric; status.value is what Keptn's operator last fetched.
    metric_servers.keptn_metric(api, namespace, "response-time", "120")
    metric_servers.keptn_metric(api, namespace, "response-time-slow", "900")
    for name in ("response-time", "response-time-slow"):
        kubectl.apply(api, template(namespace, name, {"type": "keptn"},
                                    f"keptnmetric/{namespace}/{name}/2m/reporter=destination"))
    # externalmetrics: the documented query, through the API server (Fledge sends no token to an address).
    external.values[(namespace, "job-success-rate")] = [({"env": "production"}, "99"),
                                                       ({"env": "staging"}, "80500m")]
    for env_label in ("production", "staging"):
        kubectl.apply(api, template(namespace, f"job-success-rate-{env_label}", {"type": "externalmetrics"},
                                    f"{namespace}/job-success-rate?labelSelector=env%3D{env_label}"))

    # graphite: Debian's carbon-cache and graphite-web, fed as a StatsD reporter would.
    kubectl.apply(api, template(namespace, "graphite-request-success-rate",
                                {"type": "graphite", "address": graphite_server.url}, GRAPHITE_QUERY))
    kubectl.apply(api, template(namespace, "graphite-doc", {"type": "graphite", "address": graphite_server.url},
                                GRAPHITE_DOC_QUERY))
    graphite_metric = {"name": "success rate", "templateRef": {"name": "graphite-request-success-rate"},
                       "thresholdRange": {"min": 90}, "interval": "60s"}

    # influxdb: the documented template (and the Secret's token and org, which Flagger needs both of).
    influx_server, influx_answers = influx
    influx_answers.set('"influx-good"', contract_server.NO_DATA)  # no 500s at all: no table, 0 as in Flagger
    influx_answers.set('"influx-bad"', 25)
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "influx-token",
                                                                           "namespace": namespace},
                        "stringData": {"token": INFLUX_TOKEN, "org": INFLUX_ORG}})
    kubectl.apply(api, template(namespace, "not-found", {"type": "influxdb", "address": influx_server.url,
                                                         "secretRef": {"name": "influx-token"}}, INFLUX_QUERY))
    influx_metric = {"name": "not found", "templateRef": {"name": "not-found"}, "thresholdRange": {"max": 5}}
    # ... and a real InfluxDB 1.8 with Flux, counting the 500s written for each target.
    feed_influx(influx_real, namespace, {"influx-real-good": 2, "influx-real-bad": 25})
    kubectl.apply(api, template(namespace, "not-found-real", {"type": "influxdb", "address": influx_real.url,
                                                              "secretRef": {"name": "influx-token"}},
                                INFLUX_REAL_QUERY))
    influx_real_metric = {**influx_metric, "templateRef": {"name": "not-found-real"}}

    # skywalking: a contract of the OAP's GraphQL API; the apdex is in 1/10000.
    skywalking_server, skywalking_answers = skywalking
    skywalking_answers.set("agent::skywalking-good", 9800)
    skywalking_answers.set("agent::skywalking-bad", 6200)
    kubectl.apply(api, template(namespace, "apdex", {"type": "skywalking", "address": skywalking_server.url},
                                SKYWALKING_QUERY))
    apdex_metric = {"name": "apdex", "templateRef": {"name": "apdex"}, "thresholdRange": {"min": 9000},
                    "interval": "2m"}

    # appdynamicscloud: a contract of the OAuth token endpoint and the query service; the tenant id is in the
    # Secret (Fledge's extension), so no lookup leaves the machine.
    appd_server, appd_answers = appd
    appd_answers.set("'appd-good'", 0.4)
    appd_answers.set("'appd-bad'", 7.5)
    kubectl.apply(api, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "appdcloud", "namespace": namespace},
                        "stringData": {"appdcloud_client_secret_id": APPD_CLIENT,
                                       "appdcloud_client_secret_key": APPD_SECRET,
                                       "appdcloud_tenant_id": APPD_TENANT}})
    kubectl.apply(api, template(namespace, "error-rate", {"type": "appdynamicscloud", "address": appd_server.url,
                                                          "secretRef": {"name": "appdcloud"}}, APPD_QUERY))
    appd_metric = {"name": "error rate", "templateRef": {"name": "error-rate"}, "thresholdRange": {"max": 1}}

    cases = {
        "keptn-good": ({"name": "response-time", "templateRef": {"name": "response-time"},
                        "thresholdRange": {"max": 500}, "interval": "2m"}, "Succeeded"),
        "keptn-bad": ({"name": "response-time", "templateRef": {"name": "response-time-slow"},
                       "thresholdRange": {"max": 500}, "interval": "2m"}, "Failed"),
        "external-good": ({"name": "job-success-rate", "templateRef": {"name": "job-success-rate-production"},
                           "thresholdRange": {"min": 95}}, "Succeeded"),
        "external-bad": ({"name": "job-success-rate", "templateRef": {"name": "job-success-rate-staging"},
                          "thresholdRange": {"min": 95}}, "Failed"),
        "influx-good": (influx_metric, "Succeeded"),
        "influx-bad": (influx_metric, "Failed"),
        "influx-real-good": (influx_real_metric, "Succeeded"),
        "influx-real-bad": (influx_real_metric, "Failed"),
        "skywalking-good": (apdex_metric, "Succeeded"),
        "skywalking-bad": (apdex_metric, "Failed"),
        "appd-good": (appd_metric, "Succeeded"),
        "appd-bad": (appd_metric, "Failed"),
        "graphite-good": (graphite_metric, "Succeeded"),
        "graphite-bad": (graphite_metric, "Failed"),
        # As documented, the interval unquoted: Graphite cannot evaluate it, and the release does not pass.
        "graphite-doc": ({**graphite_metric, "templateRef": {"name": "graphite-doc"}}, "Failed"),
    }
    reported = {"graphite-good": (98.0, 2.0), "graphite-bad": (60.0, 40.0), "graphite-doc": (98.0, 2.0)}
    with Reporter(graphite_server, reported):
        for name, (metric, _) in cases.items():
            release(api, namespace, name, metric)
        for name in cases:
            apps.wait_phase(api, namespace, name, "Initialized", timeout=60)
        for name in cases:
            kubectl.apply(api, apps.deployment(namespace, name, "2"))
        finals = {name: apps.wait_phase(api, namespace, name, "Succeeded", "Failed", timeout=90) for name in cases}
    assert {name: final["phase"] for name, final in finals.items()} == {
        name: phase for name, (_, phase) in cases.items()}, finals
    assert finals["keptn-bad"]["failedChecks"] == 2, finals["keptn-bad"]
    events = [event.message for event in apps.canary_events(api, namespace)]
    assert any("response-time" in message and "900" in message for message in events), events
    assert any("job-success-rate" in message and "80.5" in message for message in events), events
    assert any("success rate" in message and "60" in message for message in events), events
    assert any("could not evaluate the query (HTTP 500): ZeroDivisionError" in message for message in events), events
    assert any("not found" in message and "25" in message for message in events), events
    assert not any(INFLUX_TOKEN in message for message in events), events
    flux = [seen.json()["query"] for seen in influx_server.requests("/api/v2/query")]
    assert any('r["destination_workload"] == "influx-bad"' in query for query in flux), flux
    assert any("apdex" in message and "6200" in message for message in events), events
    durations = [seen.json()["variables"]["duration"] for seen in skywalking_server.requests("/graphql")]
    assert durations and all(duration["step"] == "MINUTE" for duration in durations), durations
    assert any("error rate" in message and "7.5" in message for message in events), events
    assert not any(APPD_SECRET in message for message in events), events
    logins = list(appd_server.requests(f"/auth/{APPD_TENANT}/default/oauth2/token"))
    assert 1 <= len(logins) <= 2, logins  # the token is kept across queries (one per provider at most)
    # The requests went through the aggregator, with the selector of each template.
    assert any("labelSelector=env%3Dproduction" in path for path in external.requests), external.requests
