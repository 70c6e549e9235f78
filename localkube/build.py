"""Build the local control plane's binaries from Go modules, once, into a cache.

Why this exists: the integration tests and the demo need a real kube-apiserver,
kube-controller-manager, kube-scheduler, etcd and kwok, and this machine has no
Docker and no download site but the Go module proxy.  So every binary is built
from its module with the machine's Go toolchain, keyed by version under
``~/.cache/fledge/`` and reused until that folder is removed.

What it must not do: download anything outside the Go module proxy, write into
the repository, or rebuild a binary that is already cached.

``go install module/cmd@version`` refuses modules that carry ``replace``
directives (k8s.io/kubernetes points its staging modules at ``./staging``, and
etcd's server module points at ``../api``).  We therefore build each component
inside a scratch module that requires the wanted version and, for Kubernetes,
pins every staging module to the matching ``v0.Y.Z`` release, read from the
release's own go.mod.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.7.0"
GATEWAY_API_VERSION = "v1.4.1"
ISTIO_API_VERSION = "v1.28.0"
HELM_VERSION = "v3.22.0"
FLAGGER_VERSION = "v1.44.0"
CLI_UTILS_VERSION = "v0.37.2"
# The cel-go of the Flux releases that evaluate healthCheckExprs (fluxcd/pkg/runtime).
CEL_GO_VERSION = "v0.26.0"
SMI_SDK_VERSION = "v0.4.1"  # the last release whose CRD serves a version Flagger writes (v1alpha3)
CONTOUR_VERSION = "v1.33.8"
TRAEFIK_VERSION = "v3.7.13"
# The newest KEDA release the Go toolchain here can download (v2.21.1 asks for go >= 1.27.4).
KEDA_VERSION = "v2.21.0"
KNATIVE_SERVING_VERSION = "v0.51.0"  # the module of Knative Serving 1.21 (knative.dev/serving tags v0.x)
APISIX_INGRESS_VERSION = "v1.7.0"  # the proxy serves only some versions of these two (others: 403)
KUMA_VERSION = "v1.8.1"
OSM_VERSION = "v1.2.4"  # the last Open Service Mesh release (the project is archived)
# InfluxDB 1.8, the first 1.x that serves Flux (`/api/v2/query` with `flux-enabled`), which Flagger's influxdb
# provider speaks; Debian's InfluxDB is 1.6, without it.
INFLUXDB_VERSION = "v1.8.3"


def cache_root() -> pathlib.Path:
    """The folder that holds every built binary and the Go build cache."""
    configured = os.environ.get("FLEDGE_CACHE")
    if configured:
        return pathlib.Path(configured)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = pathlib.Path(xdg) if xdg else pathlib.Path.home() / ".cache"
    return base / "fledge"


def tools_cache_root() -> pathlib.Path:
    """Where the tools that only some tests use are built: ``FLEDGE_TOOLS_CACHE``, else the cache root.

    CI points it at an empty folder on every run, so the build step of those tools is proved on a cold cache
    while the control plane's long build stays cached."""
    configured = os.environ.get("FLEDGE_TOOLS_CACHE")
    return pathlib.Path(configured) if configured else cache_root()


@dataclasses.dataclass(frozen=True)
class Component:
    """One Go module from which one or more commands are built."""

    key: str
    module: str
    version: str
    packages: tuple[str, ...]
    names: tuple[str, ...] = ()  # binary names when a package path does not end in one
    tool: bool = False  # built under tools_cache_root()
    # A command of Fledge's own (a folder of this repository holding one main package) built against the
    # module: copied into the scratch module, never built in place.
    source: str = ""

    def root(self) -> pathlib.Path:
        return tools_cache_root() if self.tool else cache_root()

    def bin_dir(self) -> pathlib.Path:
        return self.root() / f"{self.key}-{self.version}" / "bin"

    def binaries(self) -> dict[str, pathlib.Path]:
        names = self.names or tuple(pkg.rsplit("/", 1)[-1] for pkg in self.packages)
        return {name: self.bin_dir() / name for name in names}

    def is_built(self) -> bool:
        return all(path.exists() for path in self.binaries().values())


KUBERNETES = Component(
    key="kubernetes",
    module="k8s.io/kubernetes",
    version=KUBERNETES_VERSION,
    packages=(
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
    ),
)
ETCD = Component(
    key="etcd",
    module="go.etcd.io/etcd/server/v3",
    version=ETCD_VERSION,
    packages=("go.etcd.io/etcd/server/v3",),
    names=("etcd",),
)
KWOK = Component(
    key="kwok",
    module="sigs.k8s.io/kwok",
    version=KWOK_VERSION,
    packages=("sigs.k8s.io/kwok/cmd/kwok",),
)
HELM = Component(
    key="helm",
    module="helm.sh/helm/v3",
    version=HELM_VERSION,
    packages=("helm.sh/helm/v3/cmd/helm",),
    tool=True,
)
# The baseline of benchmarks.compare, which a smoke test in the suite also runs.
FLAGGER = Component(
    key="flagger",
    module="github.com/fluxcd/flagger",
    version=FLAGGER_VERSION,
    packages=("github.com/fluxcd/flagger/cmd/flagger",),
    tool=True,
)
# Flux's kstatus, the library behind a Kustomization's wait and healthChecks, wrapped in a small command
# (localkube/kstatus/main.go) that tests run against Canaries.
KSTATUS = Component(
    key="kstatus-check",
    module="sigs.k8s.io/cli-utils",
    version=CLI_UTILS_VERSION,
    packages=(".",),
    names=("kstatus-check",),
    tool=True,
    source="localkube/kstatus",
)
# Flux's healthCheckExprs evaluated as kustomize-controller evaluates them (cel-go with Flux's environment), in a
# small command (localkube/fluxcel/main.go): the only evaluator of CEL's optional field access (`.?`) at hand.
FLUX_CEL = Component(
    key="flux-cel-check",
    module="github.com/google/cel-go",
    version=CEL_GO_VERSION,
    packages=(".",),
    names=("flux-cel-check",),
    tool=True,
    source="localkube/fluxcel",
)
# The influxdb provider's real server (localkube.influxdb). Not a tool: its build takes minutes, so it stays in
# the cache root like the control plane's instead of being proved cold on every CI run.
INFLUXDB = Component(
    key="influxdb",
    module="github.com/influxdata/influxdb",
    version=INFLUXDB_VERSION,
    packages=("github.com/influxdata/influxdb/cmd/influxd",),
)
# What the local control plane needs to start; every environment waits for these.
COMPONENTS = (ETCD, KWOK, KUBERNETES)
# Tools only some tests use.  `python -m localkube.build` (./dev's build step) builds them before pytest starts;
# the tests only `require` them, so a build never runs inside a test (where warnings are errors and its minutes
# count against the test), and a missing tool fails its test with the command to run instead of being skipped.
TOOLS = (HELM, FLAGGER, KSTATUS, FLUX_CEL, INFLUXDB)


class BuildError(RuntimeError):
    """A Go command failed; the message carries its tail of output."""


def log(message: str) -> None:
    print(f"[fledge build] {message}", file=sys.stderr, flush=True)


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    env["GOFLAGS"] = "-mod=mod -buildvcs=false"
    # Keep the build cache beside the binaries so CI and sessions reuse it.
    env.setdefault("GOCACHE", str(cache_root() / "go-build"))
    env.setdefault("GOTOOLCHAIN", "local")
    return env


def run_go(args: list[str], cwd: pathlib.Path, describe: str) -> str:
    """Run one go command, streaming a heartbeat so a long build shows progress."""
    log(f"{describe}: go {' '.join(args)}")
    started = time.monotonic()
    lines: list[str] = []
    # The context manager closes the pipe and reaps go even when reading fails or the build is interrupted.
    with subprocess.Popen(["go", *args], cwd=cwd, env=go_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as proc:
        assert proc.stdout is not None
        last_beat = started
        try:
            for line in proc.stdout:
                lines.append(line)
                now = time.monotonic()
                if now - last_beat > 30:
                    log(f"{describe}: still running ({now - started:.0f}s)")
                    last_beat = now
        except BaseException:
            proc.kill()
            raise
        code = proc.wait()
    elapsed = time.monotonic() - started
    if code != 0:
        tail = "".join(lines[-40:])
        raise BuildError(f"{describe} failed after {elapsed:.0f}s (go {' '.join(args)}):\n{tail}")
    log(f"{describe}: done in {elapsed:.0f}s")
    return "".join(lines)


def module_dir(module: str, version: str, work: pathlib.Path) -> pathlib.Path:
    """Download one module version through the proxy and return its folder."""
    out = run_go(["mod", "download", "-json", f"{module}@{version}"], work, f"download {module}@{version}")
    return pathlib.Path(json.loads(out)["Dir"])


def staging_pins(kubernetes_dir: pathlib.Path, version: str) -> list[str]:
    """``replace`` lines pinning each staging module to its ``v0.Y.Z`` release."""
    gomod = (kubernetes_dir / "go.mod").read_text()
    staging = sorted(set(re.findall(r"^\s*(k8s\.io/[\w.-]+)\s*=>\s*\./staging/", gomod, re.MULTILINE)))
    if not staging:
        raise BuildError(f"no staging replace directives found in {kubernetes_dir}/go.mod")
    staging_version = "v0." + version.removeprefix("v1.")
    return [f"replace {name} => {name} {staging_version}" for name in staging]


def version_ldflags(version: str) -> str:
    major, minor = version.removeprefix("v").split(".")[:2]
    build_date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return " ".join(["-s", "-w", *flags])


def helm_ldflags(helm_dir: pathlib.Path, version: str) -> str:
    """Stamp the version and the Kubernetes minor of helm's client-go, as helm's Makefile does.

    Without the latter, ``helm template`` and ``helm lint`` assume Kubernetes 1.20."""
    gomod = (helm_dir / "go.mod").read_text()
    found = re.search(r"^\s*k8s\.io/client-go\s+v0\.(\d+)\.", gomod, re.MULTILINE)
    if not found:
        raise BuildError(f"no k8s.io/client-go requirement in {helm_dir}/go.mod")
    flags = ["-s", "-w", f"-X helm.sh/helm/v3/internal/version.version={version}"]
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        flags += [f"-X {pkg}.k8sVersionMajor=1", f"-X {pkg}.k8sVersionMinor={found.group(1)}"]
    return " ".join(flags)


# Set while pytest runs (tests/conftest.py): a build inside a test only happens on a cold machine, under the
# suite's warnings-as-errors and its timeouts, so it fails there and passes everywhere else.  ./dev builds first.
# An environment variable rather than a global, so that the processes a test starts (`fledge dev up`, the demo)
# refuse as well.
FORBID_ENV = "FLEDGE_BUILD_FORBIDDEN"


def forbid(reason: str) -> None:
    """Make every later build, in this process and the ones it starts, raise BuildError(reason); cached
    binaries are still returned."""
    os.environ[FORBID_ENV] = reason


def build(component: Component) -> dict[str, pathlib.Path]:
    """Build a component unless every one of its binaries is already cached."""
    if component.is_built():
        return component.binaries()
    forbidden = os.environ.get(FORBID_ENV)
    if forbidden:
        raise BuildError(f"{component.key} {component.version} is not built in {component.bin_dir()}: {forbidden}")
    work = component.root() / "scratch" / f"{component.key}-{component.version}"
    work.mkdir(parents=True, exist_ok=True)
    gomod = [f"module fledge.local/build/{component.key}", "", "go 1.25", ""]
    (work / "go.mod").write_text("\n".join(gomod))
    ldflags = "-s -w"
    if component is KUBERNETES:
        source = module_dir(component.module, component.version, work)
        gomod += staging_pins(source, component.version)
        ldflags = version_ldflags(component.version)
    elif component is HELM:
        ldflags = helm_ldflags(module_dir(component.module, component.version, work), component.version)
    gomod.append(f"require {component.module} {component.version}")
    (work / "go.mod").write_text("\n".join(gomod) + "\n")
    if component.source:
        return _build_source(component, work)
    run_go(["mod", "download"], work, f"resolve {component.key}")
    staging_dir = work / "out"
    if staging_dir.exists():
        shutil.rmtree(staging_dir)
    staging_dir.mkdir()
    for package, name in zip(component.packages, component.binaries(), strict=True):
        run_go(
            ["get", f"{package}@{component.version}"],
            work,
            f"resolve {name}",
        )
        output = str(staging_dir / name)
        run_go(["build", "-trimpath", "-ldflags", ldflags, "-o", output, package], work, f"build {name}")
    # Move into place only when every binary built, so a half build never counts as cached.
    component.bin_dir().mkdir(parents=True, exist_ok=True)
    for name, target in component.binaries().items():
        os.replace(staging_dir / name, target)
    return component.binaries()


def _build_source(component: Component, work: pathlib.Path) -> dict[str, pathlib.Path]:
    """Build a command of this repository (``component.source``) in the scratch module that requires the
    component's module; its other requirements are resolved through the module proxy by ``go mod tidy``."""
    source = pathlib.Path(__file__).resolve().parent.parent / component.source
    for path in source.glob("*.go"):
        shutil.copy(path, work / path.name)
    run_go(["mod", "tidy"], work, f"resolve {component.key}")
    (name, target), = component.binaries().items()
    staging = work / "out" / name
    staging.parent.mkdir(exist_ok=True)
    run_go(["build", "-trimpath", "-ldflags", "-s -w", "-o", str(staging), "."], work, f"build {name}")
    component.bin_dir().mkdir(parents=True, exist_ok=True)
    os.replace(staging, target)
    return component.binaries()


def ensure_all(components: tuple[Component, ...] = COMPONENTS) -> dict[str, pathlib.Path]:
    """Build whatever is missing and return every binary by its name.

    One build at a time per cache: two shells (or a test run and ``./dev demo``) share the scratch folders."""
    cache_root().mkdir(parents=True, exist_ok=True)
    with open(cache_root() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_all(components)


def ensure(component: Component) -> dict[str, pathlib.Path]:
    """One component's binaries, built under the cache lock if missing (waits for a running build)."""
    if component.is_built():
        return component.binaries()
    return ensure_all((component,))


def require(component: Component) -> dict[str, pathlib.Path]:
    """A component's cached binaries, or a BuildError that says how to build them; never builds."""
    if not component.is_built():
        raise BuildError(f"{component.key} {component.version} is not built in {component.bin_dir()}: "
                         "run `./dev setup` (or `python -m localkube.build`) first")
    return component.binaries()


def _ensure_all(components: tuple[Component, ...]) -> dict[str, pathlib.Path]:
    started = time.monotonic()
    binaries: dict[str, pathlib.Path] = {}
    for component in components:
        if component.is_built():
            log(f"{component.key} {component.version}: cached in {component.bin_dir()}")
        else:
            log(f"{component.key} {component.version}: building from its Go module (minutes; Kubernetes the longest)")
        binaries.update(build(component))
    log(f"all binaries ready in {time.monotonic() - started:.0f}s")
    _drop_build_cache()
    return binaries


def _drop_build_cache() -> None:
    # Go's build cache (3-4 GiB after a Kubernetes build) only speeds up rebuilding the same versions,
    # which never happens once the binaries are cached; a version bump rebuilds from modules anyway.
    build_cache = cache_root() / "go-build"
    if build_cache.exists() and "GOCACHE" not in os.environ:
        shutil.rmtree(build_cache, ignore_errors=True)
        log(f"removed the Go build cache {build_cache}")


def main(argv: list[str]) -> None:
    """Build every binary the demo and the tests use, then fetch the Go modules their CRDs come from."""
    by_key = {component.key: component for component in COMPONENTS + TOOLS}
    unknown = [key for key in argv if key not in by_key]
    if unknown:
        raise SystemExit(f"unknown component {', '.join(unknown)}: choose from {', '.join(by_key)}")
    ensure_all(tuple(by_key[key] for key in argv) or COMPONENTS + TOOLS)
    if not argv:
        from localkube import thirdparty  # imports this module: import it only once it is loaded

        thirdparty.download_all()


if __name__ == "__main__":
    main(sys.argv[1:])
