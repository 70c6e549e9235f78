"""Every vendor-API metric provider gates a release on the local control plane, passing and failing (issue 25).

For each provider, Flagger's documented MetricTemplate for it (unchanged but ``apiVersion``; see below) gates two
Canaries of one namespace, released at once under the shared controller: the contract server of the vendor
(tests/contract, on loopback) answers the query of the ``*-pass`` canary with a value inside the template's
range and that of the ``*-fail`` canary with one outside it, so one is promoted and the other rolled back. The
contract servers check what the controller sends: paths, parameters, the credentials of the Secret the test
creates, CloudWatch's SigV4 signature and the Google service account's signed assertion.

What differs from Flagger's documents, and why:
- ``spec.provider.address`` points at the contract server (Flagger's templates for cloud APIs have no address,
  or the vendor's); a MetricTemplate's address overrides the vendor's endpoint.
- CloudWatch's template gets a ``secretRef`` (keys ``aws_access_key_id``, ``aws_secret_access_key``): Flagger takes
  the controller's AWS identity, which the shared test controller does not have. Flagger's template as it is (no
  ``secretRef``, no ``address``) gates two more releases, in a namespace of its own, under a second controller
  that runs with IRSA's environment: its web identity token goes to the STS contract server
  (``AWS_ENDPOINT_URL_STS``) and its temporary keys sign the requests to the CloudWatch contract server
  (``AWS_ENDPOINT_URL_CLOUDWATCH``), as an EKS pod's would go to AWS.
- Dynatrace's documented query names no canary (an entity id of the user's): the failing canary's template has
  another entity id.
- Azure Monitor's Secret also names ``authorityHost`` (a Fledge extension: where the team's service principal
  gets its token), so that its token is asked of the contract server rather than of login.microsoftonline.com,
  and its workspace address may then be that server's rather than ``*.prometheus.monitor.azure.com``.
- Flagger documents no template for DQL, NerdGraph, Splunk, SigNoz, Chronosphere and Azure Monitor on the page
  Fledge follows; those below are written in the form of their providers' tests.
"""

from __future__ import annotations

import base64
import json
import pathlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from localkube import controller as local_controller
from localkube import environment
from localkube import manifests as kubectl
from tests.contract import (
    azuremonitor,
    chronosphere,
    cloudwatch,
    datadog,
    dynatrace,
    newrelic,
    server,
    signoz,
    splunk,
    stackdriver,
)
from tests.integration import apps
from tests.integration.waiting import eventually

pytestmark = pytest.mark.integration

PASSING, FAILING = 0.05, 5000.0  # inside and outside every template's range below
DT_PASS, DT_FAIL = "SERVICE-ABCDEFG0123456789", "SERVICE-FEDCBA9876543210"
CW_KEYS = ("AKIDFLEDGETEST", "fledge/contract/secret+key")
SA_KEY = stackdriver.new_key()
ROLE_ARN = "arn:aws:iam::111122223333:role/fledge-cloudwatch"
SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.fledge-irsa-service-account-token.c2lnbmF0dXJl"

DATADOG_QUERY = """100 - (
  sum:istio.mesh.request.count{
    reporter:destination,
    destination_workload_namespace:{{ namespace }},
    destination_workload:{{ target }},
    !response_code:404
  }.as_count()
  /
  sum:istio.mesh.request.count{
    reporter:destination,
    destination_workload_namespace:{{ namespace }},
    destination_workload:{{ target }}
  }.as_count()
) * 100
"""
CLOUDWATCH_QUERY = json.dumps([
    {"Id": "e1", "Expression": "m1 / m2", "Label": "ErrorRate"},
    *({"Id": f"m{index}", "MetricStat": {"Metric": {
        "Namespace": "MyKubernetesCluster", "MetricName": metric,
        "Dimensions": [{"Name": "appName", "Value": "{{ name }}.{{ namespace }}"}]},
        "Period": 60, "Stat": "Sum", "Unit": "Count"}, "ReturnData": False}
      for index, metric in ((1, "ErrorCount"), (2, "RequestCount")))], indent=4)
NEWRELIC_QUERY = """SELECT
    filter(sum(nginx_ingress_controller_requests), WHERE status >= '500') /
    sum(nginx_ingress_controller_requests) * 100
FROM Metric
WHERE metricName = 'nginx_ingress_controller_requests'
AND ingress = '{{ ingress }}' AND  namespace = '{{ namespace }}'
"""
STACKDRIVER_QUERY = """fetch k8s_container
| metric 'istio.io/service/server/response_latencies'
| filter
    (metric.destination_service_name == '{{ service }}-canary'
    && metric.destination_service_namespace == '{{ namespace }}')
| align delta(1m)
| every 1m
| group_by [],
    [value_response_latencies_percentile:
      percentile(value.response_latencies, 99)]
"""
DYNATRACE_QUERY = "builtin:service.response.time:filter(eq(dt.entity.service,{entity})):percentile(95)\n"
DQL_QUERY = ('timeseries r = avg(dt.service.request.response_time), '
             'filter: { k8s.workload.name == "{{ target }}" and k8s.namespace.name == "{{ namespace }}" }\n'
             '| fields r = arrayAvg(r)\n')
SPLUNK_QUERY = ("data('spans.count', filter=filter('sf_error', 'true') and filter('k8s.deployment.name', "
                "'{{ target }}') and filter('k8s.namespace.name', '{{ namespace }}'), rollup='delta').sum()"
                ".publish()\n")
SIGNOZ_QUERY = json.dumps({"start": 1700000000000, "end": 1700000060000, "requestType": "time_series",
                           "compositeQuery": {"queries": [{"type": "builder_query", "spec": {
                               "name": "A", "signal": "metrics", "stepInterval": 60,
                               "aggregations": [{"metricName": "signoz_calls_total", "timeAggregation": "rate",
                                                 "spaceAggregation": "sum"}],
                               "filter": {"expression": "service.name = '{{ target }}' AND "
                                                        "k8s.namespace.name = '{{ namespace }}'"}}}]}}, indent=2)
AZURE_QUERY = """
    sum(rate(http_requests_total{namespace="{{ namespace }}", app="{{ target }}", status=~"5.."}[{{ interval }}]))
    /
    sum(rate(http_requests_total{namespace="{{ namespace }}", app="{{ target }}"}[{{ interval }}])) * 100
"""
AZ_CLIENT = ("8c2b5a4e-0000-4000-8000-fledgetest001", "11111111-2222-3333-4444-555555555555", "fledge~azure.secret")
CHRONOSPHERE_QUERY = """sum(rate(
    http_requests_total{namespace="{{ namespace }}", app="{{ target }}", code=~"5.."}[{{ interval }}]))
/ sum(rate(http_requests_total{namespace="{{ namespace }}", app="{{ target }}"}[{{ interval }}])) * 100
"""


def secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def template(namespace: str, name: str, query: str, provider: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "fledge.dev/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": namespace}, "spec": {"provider": provider, "query": query}}


class Vendors:
    """The contract servers, one table of answers, and what the namespace needs to use them."""

    def __init__(self) -> None:
        self.answers = server.Answers()
        self.stackdriver = stackdriver.CloudMonitoring("my-project", SA_KEY, self.answers)
        monitoring = cloudwatch.CloudWatch(*CW_KEYS, "ap-northeast-1", self.answers)
        self.servers = {
            "datadog": server.ContractServer(datadog.Datadog("dd-api-key", "dd-app-key", self.answers)),
            "newrelic": server.ContractServer(newrelic.NewRelic("1234567", self.answers, query_key="NRIQ-query-key",
                                                                api_key="NRAK-user-key")),
            "cloudwatch": server.ContractServer(monitoring),
            "sts": server.ContractServer(cloudwatch.Sts(ROLE_ARN, SA_TOKEN, monitoring)),
            "stackdriver": server.ContractServer(self.stackdriver),
            "dynatrace": server.ContractServer(dynatrace.Dynatrace("dt0c01.fledge-token", self.answers)),
            "splunk": server.ContractServer(splunk.Splunk("sf-fledge-token", self.answers)),
            "signoz": server.ContractServer(signoz.Signoz("signoz-fledge-key", self.answers)),
            "chronosphere": server.ContractServer(chronosphere.Chronosphere("chrono-fledge-token", self.answers)),
            "azuremonitor": server.ContractServer(azuremonitor.AzureMonitor(AZ_CLIENT[1], AZ_CLIENT[0], AZ_CLIENT[2],
                                                                            self.answers)),
        }

    def __enter__(self) -> Vendors:
        for running in self.servers.values():
            running.start()
        self.stackdriver.token_uri = self.url("stackdriver") + "/token"
        for variant in [*VARIANTS, *IRSA_VARIANTS]:
            self.answers.set(f"{variant}-pass", PASSING)
            self.answers.set(f"{variant}-fail", FAILING)
        self.answers.set(DT_PASS, PASSING)
        self.answers.set(DT_FAIL, FAILING)
        return self

    def __exit__(self, *exc: object) -> None:
        for running in self.servers.values():
            running.stop()

    def url(self, vendor: str) -> str:
        return self.servers[vendor].url

    def manifests(self, namespace: str) -> list[dict[str, Any]]:
        """The Secrets and MetricTemplates of the namespace: Flagger's, pointed at the contract servers."""
        service_account = stackdriver.service_account_json(SA_KEY, self.url("stackdriver") + "/token")
        return [
            secret(namespace, "datadog", {"datadog_api_key": "dd-api-key", "datadog_application_key": "dd-app-key"}),
            template(namespace, "not-found-percentage", DATADOG_QUERY,
                     {"type": "datadog", "address": self.url("datadog"), "secretRef": {"name": "datadog"}}),
            secret(namespace, "newrelic", {"newrelic_account_id": "1234567", "newrelic_query_key": "NRIQ-query-key"}),
            template(namespace, "newrelic-error-rate", NEWRELIC_QUERY,
                     {"type": "newrelic", "address": self.url("newrelic"), "secretRef": {"name": "newrelic"}}),
            secret(namespace, "newrelic-nerdgraph", {"newrelic_account_id": "1234567",
                                                     "newrelic_api_key": "NRAK-user-key"}),
            template(namespace, "newrelic-nerdgraph-error-rate", NEWRELIC_QUERY,
                     {"type": "newrelic", "address": self.url("newrelic") + "/graphql",
                      "secretRef": {"name": "newrelic-nerdgraph"}}),
            secret(namespace, "aws", {"aws_access_key_id": CW_KEYS[0], "aws_secret_access_key": CW_KEYS[1]}),
            template(namespace, "cloudwatch-error-rate", CLOUDWATCH_QUERY,
                     {"type": "cloudwatch", "region": "ap-northeast-1", "address": self.url("cloudwatch"),
                      "secretRef": {"name": "aws"}}),
            secret(namespace, "gcloud-sa", {"project": "my-project", "serviceAccountKey": service_account}),
            template(namespace, "bytes-sent", STACKDRIVER_QUERY,
                     {"type": "stackdriver", "address": self.url("stackdriver"), "secretRef": {"name": "gcloud-sa"}}),
            secret(namespace, "dynatrace", {"dynatrace_token": "dt0c01.fledge-token"}),
            *(template(namespace, name, DYNATRACE_QUERY.format(entity=entity),
                       {"type": "dynatrace", "address": self.url("dynatrace"), "secretRef": {"name": "dynatrace"}})
              for name, entity in (("response-time-95pct", DT_PASS), ("response-time-95pct-other", DT_FAIL))),
            template(namespace, "response-time-dql", DQL_QUERY,
                     {"type": "dynatrace", "address": self.url("dynatrace"), "secretRef": {"name": "dynatrace"}}),
            secret(namespace, "splunk", {"sf_token_key": "sf-fledge-token"}),
            template(namespace, "splunk-error-count", SPLUNK_QUERY,
                     {"type": "splunk", "address": self.url("splunk"), "secretRef": {"name": "splunk"}}),
            secret(namespace, "signoz", {"apiKey": "signoz-fledge-key"}),
            template(namespace, "signoz-request-rate", SIGNOZ_QUERY,
                     {"type": "signoz", "address": self.url("signoz"), "secretRef": {"name": "signoz"},
                      "headers": {"X-Scope-OrgID": ["tenant-a", "tenant-b"]}}),  # Flagger's http.Header
            secret(namespace, "chronosphere", {"token": "chrono-fledge-token"}),
            template(namespace, "chronosphere-error-rate", CHRONOSPHERE_QUERY,
                     {"type": "chronosphere", "address": self.url("chronosphere"),
                      "secretRef": {"name": "chronosphere"}}),
            secret(namespace, "azuremonitor", {"clientId": AZ_CLIENT[0], "tenantId": AZ_CLIENT[1],
                                               "clientSecret": AZ_CLIENT[2],
                                               "authorityHost": self.url("azuremonitor")}),
            template(namespace, "azure-error-rate", AZURE_QUERY,
                     {"type": "azuremonitor", "address": self.url("azuremonitor"),
                      "secretRef": {"name": "azuremonitor"}}),
        ]


def irsa_manifests(namespace: str) -> list[dict[str, Any]]:
    """Flagger's CloudWatch template unchanged but for ``apiVersion``: the controller's own identity."""
    return [template(namespace, "cloudwatch-error-rate", CLOUDWATCH_QUERY,
                     {"type": "cloudwatch", "region": "ap-northeast-1"})]


def irsa_environment(vendors: Vendors, folder: pathlib.Path) -> dict[str, str]:
    """What EKS injects into a pod whose ServiceAccount names a role, pointed at the contract servers."""
    token = folder / "token"
    token.write_text(SA_TOKEN)
    return {"AWS_ROLE_ARN": ROLE_ARN, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL_STS": vendors.url("sts"),
            "AWS_ENDPOINT_URL_CLOUDWATCH": vendors.url("cloudwatch")}


# variant → (template of the passing canary, of the failing one, thresholdRange.max as in Flagger's reference)
VARIANTS: dict[str, tuple[str, str, float]] = {
    "dd": ("not-found-percentage", "not-found-percentage", 5),
    "nr": ("newrelic-error-rate", "newrelic-error-rate", 5),
    "nrg": ("newrelic-nerdgraph-error-rate", "newrelic-nerdgraph-error-rate", 5),
    "cw": ("cloudwatch-error-rate", "cloudwatch-error-rate", 0.1),
    "sd": ("bytes-sent", "bytes-sent", 500),
    "dt": ("response-time-95pct", "response-time-95pct-other", 1000),
    "dql": ("response-time-dql", "response-time-dql", 1000),
    "sf": ("splunk-error-count", "splunk-error-count", 5),
    "sz": ("signoz-request-rate", "signoz-request-rate", 5),
    "cs": ("chronosphere-error-rate", "chronosphere-error-rate", 5),
    "az": ("azure-error-rate", "azure-error-rate", 5),
}
IRSA_VARIANTS = {"cwi": ("cloudwatch-error-rate", "cloudwatch-error-rate", 0.1)}  # in the IRSA controller's namespace


def release(namespace: str, name: str, template_name: str, maximum: float) -> dict[str, Any]:
    analysis = {"interval": "2s", "threshold": 1, "iterations": 2, "metrics": [
        {"name": "slo", "templateRef": {"name": template_name}, "thresholdRange": {"max": maximum},
         "interval": "1m"}]}
    return apps.canary(namespace, name, "kubernetes", analysis)


@pytest.fixture
def vendors() -> Iterator[Vendors]:
    with Vendors() as running:
        yield running


def test_every_vendor_template_promotes_a_good_release_and_rolls_back_a_bad_one(
        env: environment.Environment, api: Any, namespace: str, own_namespace: str,
        controller: local_controller.Controller, vendors: Vendors, tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    for manifest in vendors.manifests(namespace):
        kubectl.apply(api, manifest)
    canaries = {f"{variant}-{outcome}": (template_name if outcome == "pass" else failing, maximum)
                for variants in (VARIANTS, IRSA_VARIANTS)
                for variant, (template_name, failing, maximum) in variants.items() for outcome in ("pass", "fail")}
    where = {name: own_namespace if name.startswith(tuple(IRSA_VARIANTS)) else namespace for name in canaries}
    for name, (template_name, maximum) in canaries.items():
        if where[name] == namespace:
            kubectl.apply(api, apps.deployment(namespace, name, "1", replicas=1))
            kubectl.apply(api, release(namespace, name, template_name, maximum))
    irsa = local_controller.Controller(env, name=f"controller-{own_namespace}", namespaces=(own_namespace,),
                                       environ=irsa_environment(vendors, tmp_path))
    irsa.start()
    try:
        for manifest in irsa_manifests(own_namespace):
            kubectl.apply(api, manifest)
        for name, (template_name, maximum) in canaries.items():
            if where[name] == own_namespace:
                kubectl.apply(api, apps.deployment(own_namespace, name, "1", replicas=1))
                kubectl.apply(api, release(own_namespace, name, template_name, maximum))
        gate_every_release(api, canaries, where)
    finally:
        irsa.stop()
    assert "Traceback" not in irsa.log_path.read_text(), irsa.log_tail(80)
    check_what_the_vendors_saw(vendors)
    print(f"\n{len(canaries)} releases gated by {len(vendors.servers)} vendor APIs in "
          f"{time.monotonic() - started:.1f}s")


def gate_every_release(api: Any, canaries: dict[str, tuple[str, float]], where: dict[str, str]) -> None:
    for name in canaries:
        apps.wait_phase(api, where[name], name, "Initialized", timeout=60)
    for name in canaries:
        kubectl.apply(api, apps.deployment(where[name], name, "2", replicas=1))

    measured: dict[str, set[float]] = {name: set() for name in canaries}  # the values the checks recorded

    def finals() -> dict[str, str]:
        statuses = {name: apps.status(api, where[name], name) for name in canaries}
        for name, current in statuses.items():
            measured[name] |= {check["value"] for check in current.get("checks", [])
                               if check.get("name") == "slo" and check.get("value") is not None}
        phases = {name: current.get("phase", "") for name, current in statuses.items()}
        return phases if all(phase in ("Succeeded", "Failed") for phase in phases.values()) else {}

    phases = eventually(finals, timeout=90, interval=0.5, what="every release promoted or rolled back",
                        show=lambda: {name: (apps.status(api, where[name], name).get("phase"),
                                             [c.get("message") for c in apps.status(api, where[name], name)
                                              .get("checks", []) if not c.get("passed")][:1])
                                      for name in canaries})
    expected = {name: "Succeeded" if name.endswith("-pass") else "Failed" for name in canaries}
    assert phases == expected, {name: apps.status(api, where[name], name) for name in canaries if
                                phases[name] != expected[name]}
    # Each verdict came from the vendor's number, not from an error: the checks recorded the contract's value.
    assert measured == {name: {PASSING if name.endswith("-pass") else FAILING} for name in canaries}, measured
    for name in canaries:  # the promoted primary runs v2; the rolled-back one still v1
        version = "2" if name.endswith("-pass") else "1"
        assert apps.image_of(api, where[name], f"{name}-primary").endswith(f":{version}"), name


def check_what_the_vendors_saw(vendors: Vendors) -> None:
    """Each vendor was asked, with the credentials of the Secret (or, for IRSA, of STS)."""
    seen = {vendor: list(running.seen) for vendor, running in vendors.servers.items()}
    assert all(seen.values()), {vendor: len(requests) for vendor, requests in seen.items()}
    assert {request.path for request in seen["newrelic"]} >= {"/v1/accounts/1234567/query", "/graphql"}
    assert {request.path for request in seen["dynatrace"]} >= {
        "/api/v2/metrics/query", "/platform/storage/query/v1/query:execute", "/platform/storage/query/v1/query:poll"}
    assert any(request.path == "/token" for request in seen["stackdriver"])
    assert all(request.header_values("X-Scope-OrgID") == ["tenant-a", "tenant-b"] for request in seen["signoz"])
    assert any(request.path == f"/{AZ_CLIENT[1]}/oauth2/v2.0/token" for request in seen["azuremonitor"])
    assert all((request.header("Authorization") or "").startswith("AWS4-HMAC-SHA256 ")
               for request in seen["cloudwatch"])
    # The IRSA controller exchanged its token once (the credentials outlive the test) and signed with them.
    assert [(request.form()["RoleArn"], request.form()["WebIdentityToken"]) for request in seen["sts"]] == [
        (ROLE_ARN, SA_TOKEN)]
    assert any(request.header("X-Amz-Security-Token") for request in seen["cloudwatch"])
