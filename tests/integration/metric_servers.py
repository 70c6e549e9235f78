"""Metric back-ends that run on the local control plane for the providers' integration tests.

- ``ExternalMetrics``: a small external metrics API server (``external.metrics.k8s.io/v1beta1``), as KEDA or
  the Datadog cluster agent serve one, registered with the local kube-apiserver as an APIService, so that
  requests go through the API server's aggregator exactly as in a cluster.  The APIService's Service is of
  type ExternalName ``127.0.0.1``: the aggregator dials it directly (the local control plane has no
  kube-proxy to route a ClusterIP), over TLS verified with the environment's CA.
- ``KEPTN_METRIC_CRD``: the KeptnMetric kind (``metrics.keptn.sh/v1beta1``) with its status subresource.

What they must not do: listen on anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import pathlib
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator
from http import server as http_server
from typing import Any

from kubernetes.client import exceptions as kube_exceptions

from canary.cluster import kube
from localkube import environment
from localkube import manifests as kubectl
from tests.integration.waiting import eventually

GROUP, VERSION = "external.metrics.k8s.io", "v1beta1"
APISERVICE = f"{VERSION}.{GROUP}"
SERVICE = "fledge-external-metrics"
APISERVICE_PATH = f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}"

# Keptn's own module is not served by the Go module proxy reachable here (403), so its CRD cannot come from
# there as the other third-party CRDs do: this declares the same group, version, kind and status subresource,
# with an open schema (the provider reads only status.value, a string in Keptn's schema).
KEPTN_METRIC_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "keptnmetrics.metrics.keptn.sh"},
    "spec": {
        "group": "metrics.keptn.sh", "scope": "Namespaced",
        "names": {"kind": "KeptnMetric", "listKind": "KeptnMetricList", "plural": "keptnmetrics",
                  "singular": "keptnmetric"},
        "versions": [{"name": "v1beta1", "served": True, "storage": True, "subresources": {"status": {}},
                      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                          "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                          "status": {"type": "object", "properties": {
                              "value": {"type": "string"}, "rawValue": {"type": "string", "format": "byte"},
                              "lastUpdated": {"type": "string", "format": "date-time"},
                              "errMsg": {"type": "string"}}}}}}}],
    },
}


def serving_certificate(pki: pathlib.Path, name: str) -> tuple[pathlib.Path, pathlib.Path]:
    """A certificate for ``name`` (the aggregator checks the Service's DNS name) signed by the environment's CA."""
    folder = pki / name
    folder.mkdir(exist_ok=True)
    cert, key = folder / "tls.crt", folder / "tls.key"
    if cert.exists():
        return cert, key
    (folder / "san.cnf").write_text(f"[ext]\nsubjectAltName=DNS:{name},IP:127.0.0.1\n"
                                    "extendedKeyUsage=serverAuth\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-keyout", "tls.key", "-subj", f"/CN={name}",
            "-out", "tls.csr")
    openssl("x509", "-req", "-in", "tls.csr", "-CA", str(pki / "ca.crt"), "-CAkey", str(pki / "ca.key"),
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-extensions", "ext", "-out", "tls.crt")
    return cert, key


def apply(api: Any, path: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply of a kind ``localkube.manifests`` does not know (APIService, CRDs, KeptnMetric)."""
    return kube.request(api, "PATCH", path, manifest, "application/apply-patch+yaml",
                        [("fieldManager", "gitops"), ("force", "true")])


def install_keptn_metric_crd(api: Any) -> None:
    apply(api, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{KEPTN_METRIC_CRD['metadata']['name']}",
          KEPTN_METRIC_CRD)

    def established() -> bool:
        body = kube.request(api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
                                        f"{KEPTN_METRIC_CRD['metadata']['name']}")
        return any(c.get("type") == "Established" and c.get("status") == "True"
                   for c in (body.get("status") or {}).get("conditions") or [])

    eventually(established, timeout=30, what="the KeptnMetric CRD established")


def keptn_metric(api: Any, namespace: str, name: str, value: str | None) -> None:
    """A KeptnMetric as a user writes it, and the status Keptn's metrics operator would give it."""
    path = f"/apis/metrics.keptn.sh/v1beta1/namespaces/{namespace}/keptnmetrics/{name}"
    apply(api, path, {"apiVersion": "metrics.keptn.sh/v1beta1", "kind": "KeptnMetric",
                      "metadata": {"name": name, "namespace": namespace},
                      "spec": {"fetchIntervalSeconds": 10, "provider": {"name": "my-prometheus-keptn-provider"},
                               "query": "histogram_quantile(0.8, sum by(le) (rate(http_server_request_latency"
                                        "_seconds_bucket[5m])))"}})
    if value is not None:
        kube.request(api, "PATCH", path + "/status", {"status": {"value": value}}, "application/merge-patch+json")


class ExternalMetrics:
    """Serves ``values[(namespace, metric)]``: a list of (labels, quantity) items, filtered by labelSelector."""

    def __init__(self, env: environment.Environment) -> None:
        self.values: dict[tuple[str, str], list[tuple[dict[str, str], str]]] = {}
        self.requests: list[str] = []
        pki = env.folder / "pki"
        cert, key = serving_certificate(pki, f"{SERVICE}.default.svc")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.ca = (pki / "ca.crt").read_bytes()
        owner = self

        class Handler(http_server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append(self.path)
                status, body = owner.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, raw: str) -> tuple[int, dict[str, Any]]:
        url = urllib.parse.urlsplit(raw)
        parts = url.path.strip("/").split("/")
        if parts == ["apis", GROUP, VERSION]:
            return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                         "resources": [{"name": "*", "namespaced": True, "kind": "ExternalMetricValueList",
                                        "verbs": ["get"]}]}
        if len(parts) != 6 or parts[:3] != ["apis", GROUP, VERSION] or parts[3] != "namespaces":
            return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                         "message": "the server could not find the requested resource", "code": 404}
        namespace, metric = parts[4], urllib.parse.unquote(parts[5])
        selector = urllib.parse.parse_qs(url.query).get("labelSelector", [""])[0]
        wanted = dict(pair.split("=", 1) for pair in selector.split(",") if "=" in pair)
        items = [{"metricName": metric, "metricLabels": labels, "timestamp": "2026-01-01T00:00:00Z", "value": value}
                 for labels, value in self.values.get((namespace, metric), [])
                 if all(labels.get(key) == want for key, want in wanted.items())]
        return 200, {"kind": "ExternalMetricValueList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {},
                     "items": items}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def external_metrics(env: environment.Environment, api: Any) -> Iterator[ExternalMetrics]:
    """An ExternalMetrics server registered as the cluster's external metrics APIService, until the block ends."""
    served = ExternalMetrics(env)
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": SERVICE, "namespace": "default"},
               "spec": {"type": "ExternalName", "externalName": "127.0.0.1",
                        "ports": [{"name": "https", "port": served.port}]}}
    apiservice = {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
                  "spec": {"group": GROUP, "version": VERSION, "groupPriorityMinimum": 100, "versionPriority": 100,
                           "caBundle": base64.b64encode(served.ca).decode(),
                           "service": {"namespace": "default", "name": SERVICE,
                                       "port": served.port}}}
    kubectl.apply(api, service)
    apply(api, APISERVICE_PATH, apiservice)
    try:
        def available() -> bool:
            body = kube.request(api, "GET", APISERVICE_PATH)
            return any(c.get("type") == "Available" and c.get("status") == "True"
                       for c in (body.get("status") or {}).get("conditions") or [])

        eventually(available, timeout=30, what=f"APIService {APISERVICE} Available",
                   show=lambda: kube.request(api, "GET", APISERVICE_PATH).get("status"))
        yield served
    finally:
        with contextlib.suppress(kube_exceptions.ApiException):
            kube.request(api, "DELETE", APISERVICE_PATH)
        kubectl.delete(api, "v1", "Service", "default", SERVICE)
        served.close()
