"""A real InfluxDB with Flux on loopback: InfluxDB 1.8 (built from its Go module) with ``flux-enabled``.

Why this exists: the ``influxdb`` metric provider is tested against the server its users run, not only a copy of
its answers. Flagger's provider speaks Flux over InfluxDB 2's query API (``POST /api/v2/query``), which InfluxDB
1.8 serves when ``[http] flux-enabled`` is set; Debian's InfluxDB 1.6 predates it. A bucket is a database (its
default retention policy); 1.8 without authentication ignores the token and the org the provider sends.

What it must not do: listen on anything but 127.0.0.1, phone home (``reporting-disabled``), or write outside the
environment's folder.
"""

from __future__ import annotations

import dataclasses
import shutil

import httpx

from localkube import build, environment, processes


@dataclasses.dataclass(frozen=True)
class InfluxDB:
    url: str  # the HTTP API: /write, /query, /api/v2/query
    name: str  # the process, as the environment records it

    def create_database(self, database: str) -> None:
        response = httpx.post(f"{self.url}/query", data={"q": f'CREATE DATABASE "{database}"'}, timeout=10)
        response.raise_for_status()

    def write(self, database: str, lines: list[str]) -> None:
        """Write line-protocol ``lines`` (timestamps in seconds) into ``database``."""
        response = httpx.post(f"{self.url}/write", params={"db": database, "precision": "s"},
                              content="\n".join(lines).encode(), timeout=10)
        response.raise_for_status()


def config(folder: str, http_port: int, rpc_port: int) -> str:
    """influxd's configuration: loopback only, data under ``folder``, Flux on, no reporting or self-monitoring."""
    return (f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc_port}"\n'
            f'[meta]\n  dir = "{folder}/meta"\n'
            f'[data]\n  dir = "{folder}/data"\n  wal-dir = "{folder}/wal"\n  query-log-enabled = false\n'
            f'[http]\n  enabled = true\n  bind-address = "127.0.0.1:{http_port}"\n  log-enabled = false\n'
            "  flux-enabled = true\n"
            "[monitor]\n  store-enabled = false\n[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n')


def start(env: environment.Environment, name: str = "influxdb") -> InfluxDB:
    """Start influxd in ``<env folder>/<name>``; it stops with the environment (or ``stop``)."""
    binary = build.require(build.INFLUXDB)["influxd"]
    folder = env.folder / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    http_port, rpc_port = processes.free_port(), processes.free_port()
    (folder / "influxdb.conf").write_text(config(str(folder), http_port, rpc_port))
    env._launch(name, [str(binary), "run", "-config", str(folder / "influxdb.conf")], env.folder / "logs",
                (http_port, rpc_port))
    url = f"http://127.0.0.1:{http_port}"
    env._wait(name, lambda: environment._http_ok(f"{url}/ping?verbose=true"), timeout=60)
    env._save()
    return InfluxDB(url=url, name=name)


def stop(env: environment.Environment, server: InfluxDB) -> None:
    for proc in [p for p in env.started if p.name == server.name]:
        if processes.is_running(proc):
            processes.stop(proc)
        env.started.remove(proc)
    env._save()
