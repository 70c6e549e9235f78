"""Third-party CRDs and kwok stages, read from their Go modules.

Why this exists: the routers write Istio, Gateway API, SMI (Linkerd, OSM), Contour, Traefik, APISIX, Kuma,
Knative Serving and Gloo objects, so the local API server must know those kinds (and KEDA's ScaledObject, an
autoscaler a Canary may name); kwok needs its Stage objects to make pods Ready.  All of them come from the
projects' own Go modules fetched through the Go module proxy (``go mod download``), never copied into this
repository; Gloo's, whose module the proxy refuses, are generated from Flagger's Go types of them
(``localkube.crdgen``).

What it must not do: fetch from anywhere but the Go module proxy.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from localkube import build, crdgen

GATEWAY_API = "sigs.k8s.io/gateway-api"
ISTIO_API = "istio.io/api"
# Only the Istio kinds a traffic router uses; the rest of Istio's CRDs add start-up time for nothing.
ISTIO_KINDS = frozenset({"VirtualService", "DestinationRule", "Gateway"})
SMI_SDK = "github.com/servicemeshinterface/smi-sdk-go"
# The TrafficSplit versions Flagger writes: v1alpha2 (linkerd, smi:v1alpha2), v1alpha1 and v1alpha3.
SMI_SERVED = frozenset({"v1alpha1", "v1alpha2", "v1alpha3"})
CONTOUR = "github.com/projectcontour/contour"
CONTOUR_KINDS = frozenset({"HTTPProxy"})
TRAEFIK = "github.com/traefik/traefik/v3"
KEDA = "github.com/kedacore/keda/v2"
KNATIVE_SERVING = "knative.dev/serving"
# The kinds the knative router reads and writes; the rest of Knative Serving is its controller's business.
KNATIVE_KINDS = frozenset({"Service", "Revision"})
APISIX_INGRESS = "github.com/apache/apisix-ingress-controller"
KUMA = "github.com/kumahq/kuma"
OSM = "github.com/openservicemesh/osm"
KWOK_STAGES = ("kustomize/stage/node/fast", "kustomize/stage/node/heartbeat-with-lease", "kustomize/stage/pod/fast")


def module_dir(module: str, version: str) -> pathlib.Path:
    """The unpacked module folder, downloading it through the proxy when missing."""
    scratch = build.cache_root() / "scratch" / "modules"
    scratch.mkdir(parents=True, exist_ok=True)
    if not (scratch / "go.mod").exists():
        (scratch / "go.mod").write_text("module fledge.local/modules\n\ngo 1.25\n")
    env = dict(os.environ, GOFLAGS="-mod=mod", GOTOOLCHAIN="local")
    result = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], cwd=scratch, env=env,
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise build.BuildError(f"go mod download {module}@{version} failed: {result.stdout}{result.stderr}")
    return pathlib.Path(json.loads(result.stdout)["Dir"])


# Every module whose files the environment or a test reads: fetched by ./dev's build step, not inside a test.
MODULES = (
    (GATEWAY_API, build.GATEWAY_API_VERSION),
    (ISTIO_API, build.ISTIO_API_VERSION),
    ("sigs.k8s.io/kwok", build.KWOK_VERSION),
    ("github.com/fluxcd/flagger", build.FLAGGER_VERSION),
    (SMI_SDK, build.SMI_SDK_VERSION),
    (CONTOUR, build.CONTOUR_VERSION),
    (TRAEFIK, build.TRAEFIK_VERSION),
    (KEDA, build.KEDA_VERSION),
    (KNATIVE_SERVING, build.KNATIVE_SERVING_VERSION),
    (APISIX_INGRESS, build.APISIX_INGRESS_VERSION),
    (KUMA, build.KUMA_VERSION),
    (OSM, build.OSM_VERSION),
)


def download_all() -> None:
    for module, version in MODULES:
        build.log(f"CRDs and stages: {module}@{version} in {module_dir(module, version)}")
    crdgen.gloo_crds()  # generated from Flagger's module with controller-gen, here rather than inside a test


def _documents(path: pathlib.Path) -> Iterator[dict[str, Any]]:
    for doc in yaml.safe_load_all(path.read_text()):
        if isinstance(doc, dict):
            yield doc


def gateway_api_crds(channel: str = "experimental") -> list[dict[str, Any]]:
    """Gateway API CRDs of one release channel (experimental is a superset of standard)."""
    if channel not in ("standard", "experimental"):
        raise ValueError(f"unknown Gateway API channel {channel!r}: use standard or experimental")
    folder = module_dir(GATEWAY_API, build.GATEWAY_API_VERSION) / "config" / "crd" / channel
    return [doc for path in sorted(folder.glob("*.yaml")) if path.name != "kustomization.yaml"
            for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def istio_crds() -> list[dict[str, Any]]:
    path = module_dir(ISTIO_API, build.ISTIO_API_VERSION) / "kubernetes" / "customresourcedefinitions.gen.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"
            and doc["spec"]["group"] == "networking.istio.io" and doc["spec"]["names"]["kind"] in ISTIO_KINDS]


def kwok_stages() -> list[dict[str, Any]]:
    """kwok's own 'fast' stages: nodes become Ready with leases, pods become Ready at once."""
    root = module_dir(*MODULES[2])
    stages = []
    for folder in KWOK_STAGES:
        for path in sorted((root / folder).glob("*.yaml")):
            stages += [doc for doc in _documents(path) if doc.get("kind") == "Stage"]
    if not stages:
        raise build.BuildError(f"no kwok Stage objects found under {root}")
    return stages


def flagger_crds() -> list[dict[str, Any]]:
    """Flagger's own CRDs (canaries, metrictemplates, alertproviders of flagger.app), for benchmarks.compare."""
    path = module_dir(*MODULES[3]) / "artifacts" / "flagger" / "crd.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def smi_crds() -> list[dict[str, Any]]:
    """The TrafficSplit CRD, served in every version Flagger writes: OSM's, with the SDK's versions it lacks.

    OSM and the SMI SDK both publish ``trafficsplits.split.smi-spec.io``, and a cluster holds one CRD of a
    name.  OSM's (``osm_crds``) is the one an OSM user has, whose v1alpha2 (what ``osm`` and ``linkerd`` write)
    is its storage version; ``serving_also`` serves its v1alpha3 too and adds the SDK's v1alpha1, so that
    ``smi:v1alpha1`` and ``smi:v1alpha3`` are served by the same CRD.
    """
    return [serving_also(crd, sdk, SMI_SERVED) for crd in osm_crds() for sdk in smi_sdk_crds()]


def smi_sdk_crds() -> list[dict[str, Any]]:
    """SMI's TrafficSplit CRD, as the SMI SDK publishes it, served in the versions Flagger writes.

    The SDK publishes it as ``apiextensions.k8s.io/v1beta1``, which API servers refuse since Kubernetes 1.22,
    with one served version; ``crd_v1`` rewrites that form as ``v1`` (the conversion the API server itself
    made of stored v1beta1 CRDs) and serves v1alpha1 and v1alpha2 as well, the versions Linkerd's SMI
    extension serves, with the one schema the published CRD gives every version.
    """
    path = module_dir(SMI_SDK, build.SMI_SDK_VERSION) / "crds" / "split.yaml"
    return [crd_v1(doc, SMI_SERVED) for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def osm_crds() -> list[dict[str, Any]]:
    """Open Service Mesh's TrafficSplit CRD (``apiextensions.k8s.io/v1``, serving v1alpha2 only), as OSM's
    bootstrap installs it."""
    path = module_dir(OSM, build.OSM_VERSION) / "cmd" / "osm-bootstrap" / "crds" / "smi_traffic_split.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def serving_also(crd: dict[str, Any], other: dict[str, Any], served: frozenset[str]) -> dict[str, Any]:
    """``crd`` (v1 form) with the versions in ``served`` served: its own as it defines them, the others taken
    from ``other`` (the same kind, v1 form) and stored nowhere, so ``crd``'s storage version stays the one."""
    if (crd["metadata"]["name"], crd["spec"]["group"]) != (other["metadata"]["name"], other["spec"]["group"]):
        raise build.BuildError(f"CRD {crd['metadata']['name']} and {other['metadata']['name']} are not one kind")
    versions = [{**version, "served": bool(version.get("served")) or version["name"] in served}
                for version in crd["spec"]["versions"]]
    own = {version["name"] for version in versions}
    versions += [{**version, "served": True, "storage": False} for version in other["spec"]["versions"]
                 if version["name"] in served and version["name"] not in own]
    return {**crd, "spec": {**crd["spec"], "versions": versions}}


def crd_v1(crd: dict[str, Any], served: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A CRD of ``apiextensions.k8s.io/v1beta1`` in the ``v1`` form: the top-level schema and printer columns
    moved into every version, the root schema typed as an object (v1 requires a structural schema); the
    versions in ``served`` are served besides those the CRD serves itself.  A v1 CRD is returned as it is."""
    if crd.get("apiVersion") == "apiextensions.k8s.io/v1":
        return crd
    spec = dict(crd["spec"])
    schema = dict((spec.pop("validation", None) or {}).get("openAPIV3Schema") or {})
    schema.setdefault("type", "object")
    columns = [{("jsonPath" if key == "JSONPath" else key): value for key, value in column.items()}
               for column in spec.pop("additionalPrinterColumns", None) or []]
    spec.pop("version", None)
    versions = []
    for version in spec.get("versions") or []:
        entry = {"name": version["name"], "served": bool(version.get("served")) or version["name"] in served,
                 "storage": bool(version.get("storage")), "schema": {"openAPIV3Schema": schema}}
        if columns:
            entry["additionalPrinterColumns"] = columns
        versions.append(entry)
    spec["versions"] = versions
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": crd["metadata"]["name"]}, "spec": spec}


def contour_crds() -> list[dict[str, Any]]:
    """Contour's HTTPProxy CRD, from the example install of the Contour module."""
    path = module_dir(CONTOUR, build.CONTOUR_VERSION) / "examples" / "contour" / "01-crds.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"
            and doc["spec"]["names"]["kind"] in CONTOUR_KINDS]


def traefik_crds() -> list[dict[str, Any]]:
    """Traefik's TraefikService CRD, as its reference documentation in the Traefik module publishes it."""
    path = (module_dir(TRAEFIK, build.TRAEFIK_VERSION) / "docs" / "content" / "reference" / "dynamic-configuration"
            / "traefik.io_traefikservices.yaml")
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def keda_crds() -> list[dict[str, Any]]:
    """KEDA's ScaledObject CRD (keda.sh), from the module's generated bases: the kind ``autoscalerRef`` names."""
    path = module_dir(KEDA, build.KEDA_VERSION) / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def knative_crds() -> list[dict[str, Any]]:
    """Knative Serving's Service and Revision CRDs (serving.knative.dev/v1), from the module's core config."""
    folder = module_dir(KNATIVE_SERVING, build.KNATIVE_SERVING_VERSION) / "config" / "core" / "300-resources"
    return [doc for path in sorted(folder.glob("*.yaml")) for doc in _documents(path)
            if doc.get("kind") == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] in KNATIVE_KINDS
            and doc["spec"]["group"] == "serving.knative.dev"]


def apisix_crds() -> list[dict[str, Any]]:
    """APISIX's ApisixRoute CRD (apisix.apache.org v2), as its ingress controller's module publishes it."""
    path = module_dir(APISIX_INGRESS, build.APISIX_INGRESS_VERSION) / "samples" / "deploy" / "crd" / "v1" / \
        "ApisixRoute.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]


def kuma_crds() -> list[dict[str, Any]]:
    """Kuma's TrafficRoute CRD (kuma.io v1alpha1, cluster-scoped), from the module's Helm chart."""
    path = module_dir(KUMA, build.KUMA_VERSION) / "deployments" / "charts" / "kuma" / "crds" / \
        "kuma.io_trafficroutes.yaml"
    return [doc for doc in _documents(path) if doc.get("kind") == "CustomResourceDefinition"]
