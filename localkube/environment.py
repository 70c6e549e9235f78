"""The local environment: a real control plane, kwok nodes, Prometheus and the traffic simulator.

Why this exists: Fledge's integration tests and demo run against a real
kube-apiserver (built from k8s.io/kubernetes), real controllers (Deployments
get ReplicaSets and pods), kwok fake nodes (pods become Ready without
containers), a real Prometheus and the traffic simulator.  ``fledge dev up``,
``fledge dev down``, ``fledge dev status`` and the pytest session fixture all
use this module, so the tests run on exactly what a developer starts by hand.

What it must not do: listen on anything but loopback, or stop a process it did
not start (see ``localkube.processes``).

Layout of an environment folder::

    state.json          what was started (PIDs, ports, URLs); written as soon as a process starts
    kubeconfig          admin credentials (static token, group system:masters)
    kubeconfig-<user>   one per extra identity asked for with ``up(users=...)`` (the benchmarks tell clients apart)
    audit.log           the API server's audit log of those users' requests, with ``up(audit=True)`` only
    pki/                CA, serving certificate, service account key
    etcd/ prometheus/   data
    logs/<name>.log     each process's output
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
import shutil
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import yaml

from canary.cluster import kube
from localkube import build, crdgen, pki, processes, thirdparty

NODE_COUNT = 3
NODE_ANNOTATION = "kwok.x-k8s.io/node"
SERVICE_CIDR = "10.96.0.0/16"


def default_folder(name: str = "fledge") -> pathlib.Path:
    return build.cache_root() / "dev" / name


def log(message: str) -> None:
    print(f"[fledge dev] {message}", file=sys.stderr, flush=True)


class StartError(RuntimeError):
    """A component did not become ready; the message names it and its log file."""


class Environment:
    """One local environment rooted at a folder; every method is safe to call again."""

    def __init__(self, folder: pathlib.Path) -> None:
        self.folder = folder
        self.state_path = folder / "state.json"
        self.kubeconfig = folder / "kubeconfig"
        self.started: list[processes.Started] = []
        self.info: dict[str, Any] = {}
        self._load()

    # -- state -------------------------------------------------------------------------------------

    def _load(self) -> None:
        if self.state_path.exists():
            data = json.loads(self.state_path.read_text())
            self.started = [processes.Started.from_json(p) for p in data.get("processes", [])]
            self.info = data.get("info", {})

    def _save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        data = {"processes": [p.to_json() for p in self.started], "info": self.info}
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.state_path)

    def _record(self, proc: processes.Started) -> None:
        self.started.append(proc)
        self._save()  # before waiting for readiness, so a crash in between still leaves it stoppable

    def running(self) -> list[processes.Started]:
        return [p for p in self.started if processes.is_running(p)]

    @property
    def api_url(self) -> str:
        return str(self.info.get("apiserver", ""))

    @property
    def prometheus_url(self) -> str:
        return str(self.info.get("prometheus", ""))

    @property
    def simulator_url(self) -> str:
        return str(self.info.get("simulator", ""))

    # -- lifecycle ---------------------------------------------------------------------------------

    def up(self, *, prometheus: bool = True, simulator: bool = True, crds: bool = True,
           users: tuple[str, ...] = (), audit: bool = False) -> None:
        """Start everything; on any failure or Ctrl-C stop what this call started and re-raise.

        ``users``: extra identities (static tokens, group system:masters), each with its own
        ``kubeconfig-<user>``, so that one client's requests can be told from another's.
        ``audit``: log those users' requests at Metadata level to ``audit.log`` (off by default: it
        costs the API server a write per request, which the tests do not need)."""
        if self.running():
            raise StartError(f"an environment is already running in {self.folder}; run `fledge dev down` first")
        self.started, self.info = [], {}
        started_at = time.monotonic()
        try:
            binaries = build.ensure_all()
            self._write_tokens(users)
            self._start_control_plane(binaries, users if audit else ())
            if crds:
                self._install_crds()
            if prometheus or simulator:
                self._start_simulator()
            if prometheus:
                self._start_prometheus()
        except BaseException:
            log("start failed; stopping what was started")
            self.down()
            raise
        self.info["up_seconds"] = round(time.monotonic() - started_at, 2)
        self._save()

    def down(self) -> list[str]:
        """Stop every recorded process in reverse start order; returns their names."""
        stopped = []
        for proc in reversed(self.started):
            if processes.is_running(proc):
                processes.stop(proc)
                stopped.append(proc.name)
        self.started = []
        self.info = {}
        if self.folder.exists():
            self._save()
        return stopped

    def restart(self, name: str, ready_timeout: float = 90) -> processes.Started:
        """Stop one recorded process and start it again with the same command line (a chaos test's fault).

        The command line is read from /proc before the stop, so the new process has exactly the old flags,
        ports and data; the kube-apiserver is waited for until it answers /readyz again.
        """
        old = next(p for p in self.started if p.name == name)
        argv = pathlib.Path(f"/proc/{old.pid}/cmdline").read_bytes().decode().rstrip("\0").split("\0")
        processes.stop(old)
        new, _ = processes.spawn(name, argv, pathlib.Path(old.log), old.ports)
        self.started = [new if p == old else p for p in self.started]
        self._save()
        if name == "kube-apiserver":
            self._wait("kube-apiserver", lambda: self._api_ok("/readyz"), timeout=ready_timeout)
        return new

    def wipe(self) -> None:
        """Stop and delete the folder, data and certificates included."""
        self.down()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- control plane -----------------------------------------------------------------------------

    def _start_control_plane(self, binaries: dict[str, pathlib.Path], audited: tuple[str, ...] = ()) -> None:
        pki_dir = pki.ensure(self.folder / "pki")
        logs = self.folder / "logs"
        token = self._admin_token()
        audit_flags = self._audit_flags(audited)
        etcd_port, etcd_peer, api_port, kcm_port, sched_port, kwok_port = (processes.free_port() for _ in range(6))

        etcd_data = self.folder / "etcd"
        shutil.rmtree(etcd_data, ignore_errors=True)  # every start is a clean cluster
        self._launch("etcd", [
            str(binaries["etcd"]), "--name=fledge", f"--data-dir={etcd_data}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=fledge=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ], logs, (etcd_port, etcd_peer))
        self._wait("etcd", lambda: _http_ok(f"http://127.0.0.1:{etcd_port}/health"))

        self._launch("kube-apiserver", [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
            f"--cert-dir={pki_dir}",
            f"--tls-cert-file={pki_dir / 'apiserver.crt'}", f"--tls-private-key-file={pki_dir / 'apiserver.key'}",
            f"--client-ca-file={pki_dir / 'ca.crt'}",
            f"--token-auth-file={self.folder / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={pki_dir / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Pods need no service account tokens under kwok; skipping that admission
            # avoids a race with the service account controller in fresh namespaces.
            "--disable-admission-plugins=ServiceAccount",
            # As production clusters do: setting blockOwnerDeletion needs update on the owner's finalizers,
            # which the Helm chart's least-privilege RBAC grants and its test proves.
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement",
            "--endpoint-reconciler-type=none",
            # Room for the benchmarks' many concurrent clients.
            "--max-requests-inflight=2000", "--max-mutating-requests-inflight=1000",
            "--profiling=false", "--v=0", *audit_flags,
        ], logs, (api_port,))
        self.info["apiserver"] = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfigs(token, pki_dir)
        for user, user_token in self._tokens().items():
            if user != "fledge-admin":
                self._write_kubeconfig(self.user_kubeconfig(user), user, user_token, pki_dir)
        self._wait("kube-apiserver", lambda: self._api_ok("/readyz"), timeout=90)

        self._launch("kube-controller-manager", [
            str(binaries["kube-controller-manager"]),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
            f"--service-account-private-key-file={pki_dir / 'sa.key'}", f"--root-ca-file={pki_dir / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Fast reaction for tests: sync Deployments and ReplicaSets concurrently.
            "--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
            "--kube-api-qps=200", "--kube-api-burst=400",
        ], logs, (kcm_port,))
        self._launch("kube-scheduler", [
            str(binaries["kube-scheduler"]),
            f"--kubeconfig={self.kubeconfig}",
            f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false",
        ], logs, (sched_port,))
        kwok_config = self.folder / "kwok.yaml"
        kwok_config.write_text(yaml.safe_dump_all(thirdparty.kwok_stages(), sort_keys=False))
        self._launch("kwok", [
            str(binaries["kwok"]), f"--kubeconfig={self.kubeconfig}", f"--config={kwok_config}",
            "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={NODE_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{kwok_port}", "--cidr=10.244.0.1/16", "--node-ip=127.0.0.1",
            # Node heartbeats by Lease (the heartbeat-with-lease stage needs it); without them the node
            # lifecycle controller marks every node NotReady after its grace period and every pod unready.
            "--node-lease-duration-seconds=40",
        ], logs, (kwok_port,))
        self._create_nodes()
        self._wait("kwok nodes Ready", self._nodes_ready, timeout=60)

    def _admin_token(self) -> str:
        tokens = self.folder / "tokens.csv"
        if not tokens.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            tokens.write_text(f'{secrets.token_hex(24)},fledge-admin,fledge-admin,"system:masters"\n')
            tokens.chmod(0o600)
        return tokens.read_text().split(",", 1)[0]

    def _write_tokens(self, users: tuple[str, ...]) -> None:
        """Add a static token for each extra user; the API server reads the file only at start."""
        self._admin_token()
        tokens = self.folder / "tokens.csv"
        known = self._tokens()
        with tokens.open("a") as out:
            for user in users:
                if user not in known:
                    out.write(f'{secrets.token_hex(24)},{user},{user},"system:masters"\n')

    def _tokens(self) -> dict[str, str]:
        """Token by user name, from the static token file."""
        rows = [line.split(",") for line in (self.folder / "tokens.csv").read_text().splitlines() if line]
        return {row[1]: row[0] for row in rows}

    def user_kubeconfig(self, user: str) -> pathlib.Path:
        """The kubeconfig of an extra identity asked for with ``up(users=...)``."""
        return self.folder / f"kubeconfig-{user}"

    @property
    def audit_log(self) -> pathlib.Path:
        return self.folder / "audit.log"

    def _audit_flags(self, users: tuple[str, ...]) -> list[str]:
        if not users:
            return []
        policy = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "omitStages": ["RequestReceived"],
                  "rules": [{"level": "Metadata", "users": list(users)}, {"level": "None"}]}
        path = self.folder / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy, sort_keys=False))
        self.audit_log.unlink(missing_ok=True)
        return [f"--audit-policy-file={path}", f"--audit-log-path={self.audit_log}", "--audit-log-format=json",
                "--audit-log-maxbackup=0", "--audit-log-maxsize=0"]

    def _write_kubeconfigs(self, token: str, pki_dir: pathlib.Path) -> None:
        self._write_kubeconfig(self.kubeconfig, "fledge-admin", token, pki_dir)
        self.info["kubeconfig"] = str(self.kubeconfig)
        self._save()

    def _write_kubeconfig(self, path: pathlib.Path, user: str, token: str, pki_dir: pathlib.Path) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fledge-local",
            "clusters": [{"name": "fledge-local", "cluster": {
                "server": self.api_url, "certificate-authority": str(pki_dir / "ca.crt")}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "fledge-local", "context": {"cluster": "fledge-local", "user": user}}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)

    def _api_ok(self, path: str) -> bool:
        return _http_ok(self.api_url + path, token=self._admin_token(), ca=self.folder / "pki" / "ca.crt")

    def api(self) -> Any:
        """A kubernetes ApiClient for this environment's admin identity."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def _create_nodes(self) -> None:
        api = self.api()
        for i in range(NODE_COUNT):
            name = f"kwok-node-{i}"
            node = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {NODE_ANNOTATION: "fake"},
                             "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                        "kubernetes.io/arch": "amd64", "node-role.kubernetes.io/agent": ""}},
                "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "1000"},
                           "capacity": {"cpu": "64", "memory": "256Gi", "pods": "1000"}},
            }
            with _ignore_conflict():
                kube.request(api, "POST", "/api/v1/nodes", node)

    def _nodes_ready(self) -> bool:
        nodes = kube.request(self.api(), "GET", "/api/v1/nodes").get("items") or []
        ready = [n for n in nodes if _condition(n, "Ready")]
        return len(ready) >= NODE_COUNT

    def _install_crds(self) -> None:
        api = self.api()
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        crds = thirdparty.gateway_api_crds("experimental") + thirdparty.istio_crds()
        crds += thirdparty.smi_crds() + thirdparty.contour_crds() + thirdparty.traefik_crds()
        crds += thirdparty.keda_crds() + thirdparty.knative_crds()
        crds += thirdparty.apisix_crds() + thirdparty.kuma_crds() + crdgen.gloo_crds()
        crds += [doc for path in sorted((pathlib.Path(__file__).parent.parent / "crds").glob("*.yaml"))
                 for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
        for crd in crds:
            with _ignore_conflict():
                kube.request(api, "POST", base, crd)
        names = [crd["metadata"]["name"] for crd in crds]

        def established() -> bool:
            return all(_condition(kube.request(api, "GET", f"{base}/{name}"), "Established") for name in names)

        self._wait(f"{len(crds)} CRDs established", established, timeout=60)
        self.info["crds"] = names
        self._save()

    # -- Prometheus and the traffic simulator ------------------------------------------------------

    def _start_simulator(self) -> None:
        port = processes.free_port()
        self._launch("simulator", [
            sys.executable, "-m", "simulator", f"--kubeconfig={self.kubeconfig}", f"--listen=127.0.0.1:{port}",
        ], self.folder / "logs", (port,))
        self.info["simulator"] = f"http://127.0.0.1:{port}"
        self._wait("traffic simulator", lambda: _http_ok(f"{self.simulator_url}/healthz"))

    def _start_prometheus(self) -> None:
        self.write_scrape_targets({"simulator": [self.simulator_url.removeprefix("http://")]})
        self.info["prometheus"] = self.start_prometheus("prometheus", scrape_seconds=1)

    def start_prometheus(self, name: str, *, scrape_seconds: float) -> str:
        """Start a Prometheus called ``name`` that scrapes the environment's targets every ``scrape_seconds``
        (the default one scrapes every second; a real cluster's every 15 or 30 s); returns its URL.  It is
        stopped with the environment."""
        binary = shutil.which("prometheus") or "/usr/bin/prometheus"
        if not pathlib.Path(binary).exists():
            raise StartError("prometheus is not installed: run `apt-get install prometheus` (Debian package)")
        port = processes.free_port()
        folder = self.folder / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        scrape = f"{scrape_seconds:g}s"
        config = {
            "global": {"scrape_interval": scrape, "scrape_timeout": f"{min(scrape_seconds, 10):g}s",
                       "evaluation_interval": "5s"},
            "scrape_configs": [{"job_name": "fledge", "file_sd_configs": [
                {"files": [str(self.folder / "targets" / "*.json")], "refresh_interval": "1s"}]}],
        }
        (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._launch(name, [
            binary, f"--config.file={folder / 'prometheus.yml'}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d", "--log.level=warn",
        ], self.folder / "logs", (port,))
        url = f"http://127.0.0.1:{port}"
        self._wait(name, lambda: _http_ok(f"{url}/-/ready"), timeout=60)
        self._save()
        return url

    def write_scrape_targets(self, targets: dict[str, list[str]]) -> None:
        """Add or replace scrape targets (job label → host:port list); Prometheus reloads them within a second."""
        folder = self.folder / "targets"
        folder.mkdir(parents=True, exist_ok=True)
        for job, hosts in targets.items():
            tmp = folder / f".{job}.tmp"
            tmp.write_text(json.dumps([{"targets": hosts, "labels": {"component": job}}]))
            os.replace(tmp, folder / f"{job}.json")

    # -- helpers -----------------------------------------------------------------------------------

    def _launch(self, name: str, argv: list[str], logs: pathlib.Path, ports: tuple[int, ...]) -> None:
        log(f"starting {name}")
        proc, _ = processes.spawn(name, argv, logs / f"{name}.log", ports)
        self._record(proc)

    def _wait(self, what: str, ready: Callable[[], bool], timeout: float = 30) -> None:
        started = time.monotonic()
        deadline = started + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            dead = [p for p in self.started if not processes.is_running(p)]
            if dead:
                tail = _tail(pathlib.Path(dead[0].log))
                raise StartError(f"{dead[0].name} exited while waiting for {what}; log {dead[0].log}:\n{tail}")
            try:
                if ready():
                    log(f"{what} ready in {time.monotonic() - started:.1f}s")
                    return
            except Exception as exc:  # not up yet: connection refused, 503, ...
                last_error = exc
            time.sleep(0.2)
        raise StartError(f"{what} not ready after {timeout:.0f}s (last error: {last_error}); "
                         f"logs in {self.folder}/logs")

    def describe(self) -> str:
        lines = [f"environment folder: {self.folder}"]
        for proc in self.started:
            state = "running" if processes.is_running(proc) else "stopped"
            ports = ",".join(str(p) for p in proc.ports)
            lines.append(f"  {proc.name:<24} pid {proc.pid:<8} {state:<8} ports {ports}")
        for key in ("apiserver", "prometheus", "simulator", "kubeconfig"):
            if key in self.info:
                lines.append(f"  {key:<24} {self.info[key]}")
        return "\n".join(lines)


def _http_ok(url: str, token: str | None = None, ca: pathlib.Path | None = None) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: bool | ssl.SSLContext = ssl.create_default_context(cafile=str(ca)) if ca else True
    response = httpx.get(url, headers=headers, verify=verify, timeout=2)
    return response.status_code == 200


def _tail(path: pathlib.Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _condition(body: dict[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True"
               for c in (body.get("status") or {}).get("conditions") or [])


@contextlib.contextmanager
def _ignore_conflict() -> Iterator[None]:
    from kubernetes.client.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        if exc.status != 409:
            raise


@contextlib.contextmanager
def running(folder: pathlib.Path, **options: Any) -> Iterator[Environment]:
    """Start an environment for the duration of a block (the pytest fixture and the demo use this)."""
    env = Environment(folder)
    env.up(**options)
    try:
        yield env
    finally:
        env.down()
