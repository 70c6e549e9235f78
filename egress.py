"""Where the controller may connect when a tenant wrote the URL: the address guard.

Why this exists: webhook, alert, ``metricsServer`` and MetricTemplate addresses come from specs that any team
writes, yet the controller calls them from its own pod, and their answers are quoted back into the Canary's
status and Events. Unguarded, a tenant reads cloud metadata (169.254.169.254) or in-cluster services it
could not reach itself. So every connection made for a tenant's URL is checked here *at connect time*:
the name is resolved once, every address it resolves to is checked, and the connection goes to a checked
address, never to a second resolution (a name that rebinds between check and connect gains nothing).
Redirects are never followed by the clients built here, and each connection of a redirect would be checked
again anyway.

The rule (``Policy.refusal``), first match wins:
1. an address in ``allow`` (``--allow-cidr``) is allowed: the operator's explicit word wins over everything;
2. link-local (169.254.0.0/16, fe80::/10: cloud metadata endpoints) is refused, and so are the metadata
   endpoints outside it (``METADATA``: AWS's fd00:ec2::254, Alibaba's 100.100.100.200);
3. loopback and the unspecified address (the controller's own pod) are refused unless ``allow_loopback``
   (``--allow-loopback``; the local environment runs Prometheus, the simulator and the load tester there);
4. an address in ``deny`` (``--deny-cidr``: the chart denies the cluster's service and pod ranges) is refused,
   unless the host is one the operator named (``allow_hosts``: ``--allow-host``, the ``--metrics-server`` and
   ``--loadtester-url`` hosts), whose Service addresses nobody knows when the chart renders.

Answers are budgeted too, since the server is the tenant's: a metric provider's exchange ends within its
timeout *as a whole* (``metrics.guarded_requests``: a per-read timeout alone lets a server that sends one byte a second
hold a thread for ever) and is cut off past ``QUERY_ANSWER_BYTES``; a webhook's or an alert's answer is only
quoted, so no more than ``SHORT_ANSWER_BYTES`` of it is read (``read_head``). Neither is inflated: the clients
ask for ``identity``, so a small compressed answer cannot unpack into gigabytes.

What it must not do: import anything of Fledge but the bottom module ``deadlines`` (every plug-in family uses
it), import httpx, httpcore, requests or urllib3 at module level (a controller that calls no URL never loads
them), or show a URL in a message (it may hold credentials: messages name the host and the address only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

LINK_LOCAL: tuple[Network, ...] = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
METADATA: tuple[tuple[Network, str], ...] = tuple((ipaddress.ip_network(cidr), who) for cidr, who in (
    ("fd00:ec2::254/128", "AWS's IPv6 instance metadata service"),
    ("100.100.100.200/32", "Alibaba Cloud's instance metadata service"),
))
"""Cloud metadata endpoints that are *not* link-local, so rule 2 alone would let them through. The others
(169.254.169.254 of AWS, Google's metadata.google.internal, Azure, Oracle, DigitalOcean and OpenStack;
Tencent's 169.254.0.23) are link-local."""


class Refused(ConnectionError):
    """A connection the policy refuses; the message names the host, the address and the flag that decides."""


@dataclasses.dataclass(frozen=True)
class Policy:
    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()
    allow_loopback: bool = False
    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, deny: Iterable[str] = (), allow: Iterable[str] = (), allow_loopback: bool = False,
           allow_hosts: Iterable[str] = ()) -> Policy:
        """A policy from flag values; raises ValueError naming a CIDR that does not parse."""
        return cls(deny=tuple(_network(text) for text in deny), allow=tuple(_network(text) for text in allow),
                   allow_loopback=allow_loopback, allow_hosts=frozenset(host.lower() for host in allow_hosts if host))

    def refusal(self, address: str, host: str = "") -> str | None:
        """Why the controller must not connect to ``address`` (an IP literal), or None when it may."""
        ip = _plain(ipaddress.ip_address(address.split("%", 1)[0]))  # drop an IPv6 zone ("fe80::1%eth0")
        if any(ip in network for network in self.allow):
            return None
        if ip.is_link_local or any(ip in network for network in LINK_LOCAL):
            return "a link-local address (cloud metadata endpoints live there)"
        metadata = next((who for network, who in METADATA if ip in network), None)
        if metadata is not None:
            return f"a cloud metadata address ({metadata}; --allow-cidr allows it)"
        if (ip.is_loopback or ip.is_unspecified) and not self.allow_loopback:
            return "a loopback address (the controller's own pod; --allow-loopback allows it)"
        denied = next((network for network in self.deny if ip in network), None)
        if denied is not None and host.lower().rstrip(".") not in self.allow_hosts:
            return f"in {denied}, denied by --deny-cidr (--allow-cidr or --allow-host allow a part of it)"
        return None

    def check(self, host: str, addresses: Sequence[str]) -> list[str]:
        """``addresses`` (what ``host`` resolved to), each checked; raises Refused if any is refused: a name
        that also resolves to a denied address is not trusted with the others."""
        if not addresses:
            raise Refused(f"{host} resolves to no address")
        for address in addresses:
            reason = self.refusal(address, host)
            if reason is not None:
                shown = f"{host} is" if host == address else f"{host} resolves to {address}, which is"
                raise Refused(f"refused to connect: {shown} {reason}")
        return list(dict.fromkeys(addresses))


_policy = Policy()


def configure(policy: Policy) -> None:
    """Set the process's policy (the controller does at start-up, from its flags)."""
    global _policy
    _policy = policy


def current() -> Policy:
    return _policy


def _network(text: str) -> Network:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a CIDR such as 10.96.0.0/12") from None


def host_of(url: str) -> str:
    """The host of ``url`` ("" when it has none), for ``allow_hosts``."""
    import urllib.parse

    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""


# /96 prefixes whose last 32 bits are an IPv4 address: NAT64's well-known prefix (RFC 6052), IPv4-compatible.
_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))


def _plain(ip: Address) -> Address:
    """An IPv6 address that carries an IPv4 one as the IPv4 address it reaches: mapped (::ffff:169.254.169.254),
    NAT64 (64:ff9b::a9fe:a9fe), 6to4 (2002:a9fe:a9fe::), Teredo, IPv4-compatible (::a9fe:a9fe); a check of the
    IPv6 form alone would let a tenant reach a refused IPv4 address through a translator."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return ip
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    embedded = int(ip) & 0xFFFFFFFF
    if any(ip in network for network in _EMBEDDING) and embedded and not (ip.is_loopback or ip.is_unspecified):
        return ipaddress.IPv4Address(embedded)
    return ip


def _addresses(infos: Iterable[tuple[Any, ...]]) -> list[str]:
    return [str(info[4][0]) for info in infos]


def resolve(host: str, port: int) -> list[str]:
    """The checked addresses of ``host``, blocking (for threads); raises socket.gaierror or Refused."""
    return _policy.check(host, _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)))


Lookup = Callable[[str, int], Awaitable[list[tuple[Any, ...]]]]
"""``getaddrinfo`` for a host and port, awaited: the caller's choice of resolver threads."""


async def _loop_lookup(host: str, port: int) -> list[tuple[Any, ...]]:
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)


async def aresolve(host: str, port: int, lookup: Lookup | None = None) -> list[str]:
    """The checked addresses of ``host``, found by ``lookup`` (the event loop's resolver by default); raises
    socket.gaierror or Refused."""
    return _policy.check(host, _addresses(await (lookup or _loop_lookup)(host, port)))


# -- httpx --------------------------------------------------------------------------------------------


# Wraps each connection a client built here opens (``canary.cluster.fence.FencedStream``: writes fenced by the Lease).
StreamWrapper = Callable[[Any], Any]


def async_transport(wrap_stream: StreamWrapper | None = None, *, lookup: Lookup | None = None, **kwargs: Any) -> Any:
    """An ``httpx.AsyncHTTPTransport`` (``kwargs`` as its own, ``proxy=`` included) whose every connection
    goes through the policy, its names resolved by ``lookup``; a refused one fails as ``httpx.ConnectError``
    with the reason.  Each connection opened is handed to ``wrap_stream`` (an httpcore network stream in, one
    out) when given."""
    import httpx

    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = transport._pool  # httpx takes no network backend; tests/unit/test_egress.py fails if this moves
    pool._network_backend = _guarded_backend(pool._network_backend, wrap_stream, lookup)
    return transport


def async_client(wrap_stream: StreamWrapper | None = None, **kwargs: Any) -> Any:
    """An ``httpx.AsyncClient`` on ``async_transport``, never following redirects, and deaf to HTTP_PROXY and
    the like (httpx would mount unguarded transports for them; a proxy must be given as ``proxy=``)."""
    import httpx

    # The pool's limits are the transport's: httpx ignores a client's ``limits`` when it is given a transport.
    pooling = {key: kwargs.pop(key) for key in ("proxy", "limits", "lookup") if key in kwargs}
    return httpx.AsyncClient(transport=async_transport(wrap_stream, **pooling), follow_redirects=False,
                             trust_env=False, **kwargs)


def stream_wrapper_of(client: Any) -> StreamWrapper | None:
    """The ``wrap_stream`` of a client made by ``async_client`` (None for any other), to make one like it."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    return getattr(getattr(pool, "_network_backend", None), "wrap_stream", None)


def lookup_of(client: Any) -> Lookup | None:
    """The ``lookup`` of a client made by ``async_client`` (None: the event loop's resolver), to make one like it."""
    pool = getattr(getattr(client, "_transport", None), "_pool", None)
    return getattr(getattr(pool, "_network_backend", None), "lookup_names", None)


def _guarded_backend(inner: Any, wrap: StreamWrapper | None = None, lookup: Lookup | None = None) -> Any:
    import httpcore

    class GuardedBackend(httpcore.AsyncNetworkBackend):
        wrap_stream = wrap
        lookup_names = lookup

        async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                              local_address: str | None = None, socket_options: Any = None) -> Any:
            try:
                addresses = await asyncio.wait_for(aresolve(host, port, lookup), timeout)
            except Refused as exc:
                raise httpcore.ConnectError(str(exc)) from exc
            except (socket.gaierror, TimeoutError) as exc:
                raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
            failure: Exception | None = None
            for address in addresses:  # the checked addresses only, never the name again
                try:
                    stream = await inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                                     socket_options=socket_options)
                    return stream if wrap is None else wrap(stream)
                except httpcore.ConnectError as exc:
                    failure = exc
            assert failure is not None
            raise failure

        async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                      socket_options: Any = None) -> Any:
            raise httpcore.ConnectError("refused to connect: a Unix socket is never a tenant's address")

        async def sleep(self, seconds: float) -> None:
            await inner.sleep(seconds)

    return GuardedBackend()


# -- answer caps ---------------------------------------------------------------------------------------

QUERY_ANSWER_BYTES = 512 * 2**10
"""The most of a metric provider's answer that is read (512 KiB). A check needs one number and the judge a few
series (its buckets are summed by ``le``: about 30); 512 KiB is a vector of about 2,000 series with six labels.
Past it the connection is closed and the query is unavailable. The cap was 8 MiB, but an answer is held parsed
(up to 32 times its bytes: ``answer_memory``), and one namespace's 8 queries at 8 MiB took 661 MiB: every answer
now also counts against the process's answer memory, and 512 KiB parsed (16 MiB) fits one namespace's share."""


class AnswerTooLarge(Exception):
    """An answer longer than its cap; the rest was never read and the connection was closed."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"answer larger than {size_text(limit)}")
        self.limit = limit


def size_text(count: int) -> str:
    """``8 MiB``, ``64 KiB``, ``500 bytes``."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} bytes"


# -- httpx answers that are only quoted (webhooks, alerts) --------------------------------------------

SHORT_ANSWER_BYTES = 64 * 1024
"""The most of a webhook's or an alert's answer that is read (64 KiB): only its status counts and a few
hundred characters are quoted; the rest is never read (the connection is closed instead of drained)."""
IDENTITY = {"Accept-Encoding": "identity"}  # headers asking for an answer as sent, nothing to inflate


async def read_head(response: Any, limit: int = SHORT_ANSWER_BYTES) -> bytes:
    """At most ``limit`` bytes of an ``httpx`` streamed response's body, as sent (not decompressed); the rest
    stays unread, so closing the response closes its connection."""
    if response.is_stream_consumed:  # a response made whole (httpx reads one built from bytes at once)
        return bytes(response.content[:limit])
    head = bytearray()
    async with contextlib.aclosing(response.aiter_raw()) as chunks:
        async for chunk in chunks:
            head += chunk[: limit - len(head)]
            if len(head) >= limit:
                break
    return bytes(head)


# -- answers ------------------------------------------------------------------------------------------

EXCERPT_CHARS = 160


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """What may be quoted of an answer into a status or an Event: whitespace runs as one space, no control
    or format characters (no terminal escapes, no bidi overrides), at most ``limit`` characters."""
    import unicodedata

    kept = "".join(char if unicodedata.category(char)[0] != "C" else " " for char in text)
    flat = " ".join(kept.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."
