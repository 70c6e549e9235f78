"""CRDs generated at build time from Go types, for data planes whose own Go module the proxy does not serve.

Why this exists: the gloo router writes Gloo's ``gloo.solo.io/v1`` Upstream and ``gateway.solo.io/v1``
RouteTable, but ``github.com/solo-io/gloo`` and ``solo-apis`` are refused by the Go module proxy.  Flagger's own
module (already fetched for the benchmark's Flagger build) carries Go types of both kinds, the fields its gloo
router reads and writes (``pkg/apis/gloo/v1``, ``pkg/apis/gloogateway/v1``).  controller-gen
(``sigs.k8s.io/controller-tools``, built from its module like the control plane's binaries) turns those types
into CRDs, once, into the cache next to the binaries; the local API server installs them from there.

What it must not do: write the CRDs into the repository, fetch from anywhere but the Go module proxy, or run
controller-gen when its output is already cached.  The schemas are Flagger's subset of Gloo's: a field Flagger's
types lack is pruned by the API server, which no test of Fledge's writes.
"""

from __future__ import annotations

import fcntl
import os
import pathlib
import shutil
import subprocess
import time
from typing import Any

import yaml

from localkube import build

CONTROLLER_TOOLS_VERSION = "v0.23.0"
CONTROLLER_GEN = build.Component(
    key="controller-gen",
    module="sigs.k8s.io/controller-tools",
    version=CONTROLLER_TOOLS_VERSION,
    packages=("sigs.k8s.io/controller-tools/cmd/controller-gen",),
)
FLAGGER = "github.com/fluxcd/flagger"
# Flagger's packages of Gloo's types: Upstream (gloo.solo.io) and RouteTable (gateway.solo.io).
GLOO_PACKAGES = (f"{FLAGGER}/pkg/apis/gloo/...", f"{FLAGGER}/pkg/apis/gloogateway/...")
GLOO_FILES = ("gloo.solo.io_upstreams.yaml", "gateway.solo.io_routetables.yaml")


def gloo_dir() -> pathlib.Path:
    """Where the generated Gloo CRDs are cached, keyed by both versions they come from."""
    return build.cache_root() / f"gloo-crds-flagger-{build.FLAGGER_VERSION}-{CONTROLLER_TOOLS_VERSION}"


def gloo_generated() -> bool:
    return all((gloo_dir() / name).exists() for name in GLOO_FILES)


def gloo_crds() -> list[dict[str, Any]]:
    """Gloo's Upstream and RouteTable CRDs, generated first when the cache lacks them (a BuildError inside the
    test session, which builds nothing: ``./dev setup`` generates them)."""
    if not gloo_generated():
        generate_gloo()
    crds = []
    for name in GLOO_FILES:
        crds += [doc for doc in yaml.safe_load_all((gloo_dir() / name).read_text())
                 if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"]
    return crds


def generate_gloo() -> pathlib.Path:
    """Run controller-gen over Flagger's Gloo types in a scratch module that requires Flagger; the CRDs move
    into the cache only once both are written.  Under the build lock: two shells share the scratch folder."""
    build.cache_root().mkdir(parents=True, exist_ok=True)
    with open(build.cache_root() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if gloo_generated():
            return gloo_dir()
        forbidden = os.environ.get(build.FORBID_ENV)
        if forbidden:
            raise build.BuildError(f"the Gloo CRDs are not generated in {gloo_dir()}: {forbidden}")
        build.log(f"Gloo CRDs: generating from {FLAGGER}@{build.FLAGGER_VERSION} with controller-gen "
                  f"{CONTROLLER_TOOLS_VERSION}")
        binary = build.build(CONTROLLER_GEN)["controller-gen"]
        work = build.cache_root() / "scratch" / f"gloo-crds-{build.FLAGGER_VERSION}"
        work.mkdir(parents=True, exist_ok=True)
        (work / "go.mod").write_text(f"module fledge.local/gloo\n\ngo 1.25\n\nrequire {FLAGGER} "
                                     f"{build.FLAGGER_VERSION}\n")
        run = build.run_go  # controller-gen loads the packages through `go list`, with the build's environment
        run(["mod", "download", f"{FLAGGER}@{build.FLAGGER_VERSION}"], work, "resolve Flagger's Gloo types")
        staging = work / "out"
        if staging.exists():
            shutil.rmtree(staging)
        _controller_gen(binary, work, staging)
        missing = [name for name in GLOO_FILES if not (staging / name).exists()]
        if missing:
            raise build.BuildError(f"controller-gen wrote no {', '.join(missing)} in {staging}")
        target = gloo_dir()
        target.mkdir(parents=True, exist_ok=True)
        for name in GLOO_FILES:
            os.replace(staging / name, target / name)
        build.log(f"Gloo CRDs: cached in {target}")
        return target


def _controller_gen(binary: pathlib.Path, work: pathlib.Path, out: pathlib.Path) -> None:
    args = [str(binary), "crd:allowDangerousTypes=true", *(f"paths={package}" for package in GLOO_PACKAGES),
            f"output:crd:dir={out}"]
    build.log(f"Gloo CRDs: {' '.join(args[1:])}")
    started = time.monotonic()
    result = subprocess.run(args, cwd=work, env=build.go_env(), capture_output=True, text=True)
    if result.returncode != 0:
        raise build.BuildError(f"controller-gen failed after {time.monotonic() - started:.0f}s:\n"
                               f"{result.stdout[-4000:]}{result.stderr[-4000:]}")
    build.log(f"Gloo CRDs: controller-gen done in {time.monotonic() - started:.0f}s")
