"""Certificates and keys for the local API server, made with the openssl command.

Why this exists: kube-apiserver needs a serving certificate and a service
account signing key; clients need a CA to trust.  Made once per environment
folder and reused on the next start.

What it must not do: make certificates valid for anything but loopback.
"""

from __future__ import annotations

import pathlib
import subprocess


def _openssl(*args: str, cwd: pathlib.Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {result.stderr.strip()}")


def ensure(folder: pathlib.Path) -> pathlib.Path:
    """Write ca.crt, apiserver.crt/key and sa.key/pub into ``folder`` unless present."""
    folder.mkdir(parents=True, exist_ok=True)
    if all((folder / name).exists() for name in ("ca.crt", "apiserver.crt", "apiserver.key", "sa.key", "sa.pub")):
        return folder
    _openssl("genrsa", "-out", "ca.key", "2048", cwd=folder)
    _openssl("req", "-x509", "-new", "-nodes", "-key", "ca.key", "-subj", "/CN=fledge-local-ca",
             "-days", "3650", "-out", "ca.crt", cwd=folder)
    _openssl("genrsa", "-out", "apiserver.key", "2048", cwd=folder)
    (folder / "san.cnf").write_text(
        "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl("req", "-new", "-key", "apiserver.key", "-subj", "/CN=kube-apiserver", "-out", "apiserver.csr",
             cwd=folder)
    _openssl("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3650", "-extfile", "san.cnf", "-extensions", "ext", "-out", "apiserver.crt", cwd=folder)
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=folder)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=folder)
    return folder
