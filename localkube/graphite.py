"""A real Graphite on loopback: Debian's carbon-cache storing what it receives, graphite-web serving /render.

Why this exists: the ``graphite`` metric provider is tested against the server its users run, not a copy of its
answers.  carbon-cache takes plaintext lines (``<path> <value> <timestamp>``) and writes whisper files;
graphite-web (a Django application) answers the render API from those files and, for points carbon has not
written yet, from carbon's cache (carbonlink).  Both come from Debian (graphite-carbon, graphite-web) and run
under Debian's own Python (``/usr/bin/python3``), which has their dependencies; this project's Python does not
need them.  Every file they write lives in the environment's folder.

What it must not do: listen on anything but 127.0.0.1, or touch the system-wide /etc/carbon, /etc/graphite or
/var/lib/graphite (the Debian packages' own configuration is never read).
"""

from __future__ import annotations

import dataclasses
import pathlib
import secrets
import shutil
import socket
import time

from localkube import environment, processes

CARBON = pathlib.Path("/usr/bin/carbon-cache")
SYSTEM_PYTHON = pathlib.Path("/usr/bin/python3")
WEB_MODULE = pathlib.Path("/usr/lib/python3/dist-packages/graphite/wsgi.py")
RETENTION = "1s:2h"  # one point a second: a test's release lasts seconds

# graphite-web's WSGI application behind the standard library's threading server: no web server to install.
_SERVE = """
import socketserver, sys
from wsgiref import simple_server
from graphite.wsgi import application

class Server(socketserver.ThreadingMixIn, simple_server.WSGIServer):
    daemon_threads = True

class Quiet(simple_server.WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = simple_server.make_server("127.0.0.1", int(sys.argv[1]), application, Server, Quiet)
server.serve_forever()
"""


@dataclasses.dataclass(frozen=True)
class Graphite:
    url: str  # graphite-web, the render API's root
    carbon: tuple[str, int]  # carbon-cache's plaintext line receiver
    names: tuple[str, ...]  # the processes, as the environment records them

    def send(self, points: list[tuple[str, float, float]]) -> None:
        """Send ``(path, value, unix time)`` points to carbon over one plaintext connection."""
        lines = "".join(f"{path} {value!r} {int(at)}\n" for path, value, at in points)
        with socket.create_connection(self.carbon, timeout=5) as sock:
            sock.sendall(lines.encode())


def installed() -> bool:
    return CARBON.exists() and WEB_MODULE.exists() and SYSTEM_PYTHON.exists()


def start(env: environment.Environment, name: str = "graphite") -> Graphite:
    """Start carbon-cache and graphite-web in ``<env folder>/<name>``; both stop with the environment."""
    if not installed():
        raise environment.StartError("graphite is not installed: run `apt-get install graphite-carbon "
                                     "graphite-web` (Debian packages; ./dev installs them)")
    folder = env.folder / name
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("whisper", "log", "lists", "web-log"):
        (folder / sub).mkdir(parents=True)
    line_port, pickle_port, query_port, web_port = (processes.free_port() for _ in range(4))
    (folder / "storage-schemas.conf").write_text(f"[everything]\npattern = .*\nretentions = {RETENTION}\n")
    (folder / "carbon.conf").write_text(
        "[cache]\n"
        f"STORAGE_DIR = {folder}/\nLOCAL_DATA_DIR = {folder}/whisper/\nWHITELISTS_DIR = {folder}/lists/\n"
        f"CONF_DIR = {folder}/\nLOG_DIR = {folder}/log/\nPID_DIR = {folder}/\n"
        "DATABASE = whisper\nENABLE_LOGROTATION = False\n"
        "MAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\nMAX_CREATES_PER_MINUTE = inf\n"
        f"LINE_RECEIVER_INTERFACE = 127.0.0.1\nLINE_RECEIVER_PORT = {line_port}\nENABLE_UDP_LISTENER = False\n"
        f"PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle_port}\n"
        f"CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query_port}\n"
        "USE_FLOW_CONTROL = True\nLOG_UPDATES = False\nLOG_CREATES = False\nLOG_LISTENER_CONNECTIONS = False\n"
    )
    (folder / "local_settings.py").write_text(
        f"SECRET_KEY = {secrets.token_hex(16)!r}\n"
        f"STORAGE_DIR = {str(folder)!r}\nWHISPER_DIR = {str(folder / 'whisper') + '/'!r}\n"
        f"LOG_DIR = {str(folder / 'web-log')!r}\nINDEX_FILE = {str(folder / 'index')!r}\n"
        f"STATIC_ROOT = {str(folder / 'static')!r}\n"
        f"CARBONLINK_HOSTS = ['127.0.0.1:{query_port}:a']\n"
        f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.sqlite3', "
        f"'NAME': {str(folder / 'graphite.db')!r}}}}}\n"
        "ALLOWED_HOSTS = ['127.0.0.1', 'localhost']\nTIME_ZONE = 'UTC'\n"
    )
    (folder / "serve.py").write_text(_SERVE)
    env._launch(f"{name}-carbon", [
        str(SYSTEM_PYTHON), str(CARBON), f"--config={folder / 'carbon.conf'}", f"--pidfile={folder / 'carbon.pid'}",
        "--nodaemon", "start",
    ], env.folder / "logs", (line_port, pickle_port, query_port))
    env._wait(f"{name} carbon-cache", lambda: _listening(line_port), timeout=30)
    launch_env = {"PYTHONPATH": str(folder), "GRAPHITE_SETTINGS_MODULE": "local_settings",
                  "DJANGO_SETTINGS_MODULE": "graphite.settings"}
    env._launch(f"{name}-web", ["env", *(f"{k}={v}" for k, v in launch_env.items()),
                                str(SYSTEM_PYTHON), str(folder / "serve.py"), str(web_port)],
                env.folder / "logs", (web_port,))
    url = f"http://127.0.0.1:{web_port}"
    env._wait(f"{name} graphite-web", lambda: environment._http_ok(f"{url}/render?target=none&format=json"),
              timeout=30)
    env._save()
    return Graphite(url=url, carbon=("127.0.0.1", line_port), names=(f"{name}-carbon", f"{name}-web"))


def stop(env: environment.Environment, graphite: Graphite) -> None:
    """Stop the processes of ``graphite`` (before the environment stops, e.g. at the end of a test module)."""
    for proc in [p for p in env.started if p.name in graphite.names]:
        if processes.is_running(proc):
            processes.stop(proc)
        env.started.remove(proc)
    env._save()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        time.sleep(0.1)
        return False
