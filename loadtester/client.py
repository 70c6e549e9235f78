"""``fledge loadtester gate|rollback|token``: what a person does with the load tester, token included.

Why this module exists: opening a gate by hand is a release decision, so it must carry the token of the
canary's namespace, and the command that does it should be as short as the curl it replaces::

    export FLEDGE_LOADTESTER_TOKEN=...      # the token of namespace prod, from your operator
    fledge loadtester gate open prod/payments --url http://fledge-loadtester.fledge-system
    fledge loadtester rollback open prod/payments --url ...
    fledge loadtester token prod --key-file key   # the operator: print the token of namespace prod

What it must not do: print a token it did not derive on request, send a token anywhere but ``--url``, or
start a server (``cli`` does).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import httpx

from apis import keys

COMMANDS = ("gate", "rollback", "token")
TOKEN_ENV = "FLEDGE_LOADTESTER_TOKEN"
URL_ENV = "FLEDGE_LOADTESTER_URL"


def _canary(value: str) -> tuple[str, str]:
    namespace, slash, name = value.partition("/")
    if not slash or not namespace or not name or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAMESPACE/NAME, got {value!r}")
    return namespace, name


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(prog="fledge loadtester", description="Open or close a canary's gates on the "
                                  "load tester, or print a namespace's token.")
    sub = cli.add_subparsers(dest="command", required=True)
    for flag in ("gate", "rollback"):
        command = sub.add_parser(flag, help=f"open, close or check the {flag} of a canary")
        command.add_argument("action", choices=("open", "close", "check"))
        command.add_argument("canary", type=_canary, metavar="NAMESPACE/NAME")
        command.add_argument("--url", default=os.environ.get(URL_ENV, ""),
                             help=f"the load tester's address (default ${URL_ENV})")
        command.add_argument("--token-file", metavar="PATH",
                             help=f"file holding the namespace's token (default ${TOKEN_ENV})")
    token = sub.add_parser("token", help="print the token of a namespace (needs the load tester's key)")
    token.add_argument("namespace", nargs="?", default="", help="the namespace whose Canaries the token may act on")
    token.add_argument("--all-namespaces", action="store_true", help="print the operator's token, good for all")
    token.add_argument("--key-file", required=True, metavar="PATH", help="the load tester's --token-file")
    return cli


def _token(path: str | None) -> str:
    if path:
        with open(path) as file:
            return file.read().strip()
    return os.environ.get(TOKEN_ENV, "").strip()


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        if args.command == "token":
            if bool(args.namespace) == args.all_namespaces:
                print("fledge loadtester token: give a namespace or --all-namespaces", file=sys.stderr)
                return 2
            print(keys.namespace_token(keys.read_key(args.key_file), args.namespace or keys.ALL_NAMESPACES))
            return 0
        if not args.url:
            print(f"fledge loadtester {args.command}: give --url or set ${URL_ENV}", file=sys.stderr)
            return 2
        token = _token(args.token_file)
        namespace, name = args.canary
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = httpx.post(f"{args.url.rstrip('/')}/{args.command}/{args.action}", headers=headers,
                              json={"name": name, "namespace": namespace}, timeout=10)
    except (OSError, ValueError, httpx.HTTPError) as exc:
        print(f"fledge loadtester {args.command}: {exc}", file=sys.stderr)
        return 1
    print(f"{response.status_code} {response.text}")
    return 0 if response.is_success else 1
