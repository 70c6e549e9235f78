"""Go-style durations ("1m30s", "250ms", "1.5h") as Flagger's manifests write them.

Why this module exists: every interval and timeout in a Canary is a Go ``time.Duration`` string, and a
Flagger manifest must mean the same thing here. Parsing is exact (integer nanoseconds, as Go keeps them)
so that ``parse_duration(format_duration(x))`` gives ``x`` back to the nanosecond.

What it must not do: read the clock, know about Canaries, or accept anything Go's ``time.ParseDuration``
would reject (a bare ``"10"`` is an error, not ten seconds), apart from being silent about Go's
292-year overflow limit.
"""

import math
import re
from fractions import Fraction

# Go accepts both micro signs (U+00B5 and U+03BC) besides "us".
_UNIT_NS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_UNIT_NAMES = "ns, us, ms, s, m, h"
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")

# The same grammar as a regular expression, for the CRD schema, so the API server rejects what the
# parser would (RE2 and Python agree on this pattern).
# The micro signs are real characters, not \u escapes: Go's RE2 has no \u escape.
PATTERN = r"^[-+]?(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|" + "\u00b5s|\u03bcs" + r"|ms|s|m|h))+)$"


def parse_duration(text: str) -> float:
    """Return the seconds in a Go duration string; raise ValueError saying what is wrong with it."""
    return parse_duration_ns(text) / 1e9


def parse_duration_ns(text: str) -> int:
    """Return the whole nanoseconds in a Go duration string (fractions of a nanosecond are dropped, as in Go)."""
    if not isinstance(text, str):
        raise ValueError(f"invalid duration {text!r}: expected a string such as \"30s\" or \"1m30s\"")
    rest = text
    sign = 1
    if rest[:1] in ("+", "-"):
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}: empty; write a number and a unit such as \"30s\"")
    total = Fraction(0)
    pos = 0
    while pos < len(rest):
        match = _COMPONENT.match(rest, pos)
        # The pattern can match the empty string, so a match always exists; it just may not advance.
        assert match is not None
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}: expected a number at {rest[pos:]!r}")
        if not unit:
            raise ValueError(f"invalid duration {text!r}: missing unit after {rest[pos:match.end()]!r} "
                             f"(valid units: {_UNIT_NAMES})")
        if unit not in _UNIT_NS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r} (valid units: {_UNIT_NAMES})")
        value = Fraction(int(whole or "0"))
        if frac:
            value += Fraction(int(frac), 10 ** len(frac))
        total += value * _UNIT_NS[unit]
        pos = match.end()
    return sign * int(total)


def format_duration(seconds: float) -> str:
    """Write seconds the way Go's Duration.String does ("1m30s", "1h0m0s", "1.5ms", "0s"), to the nanosecond."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format {seconds!r} as a duration")
    return format_duration_ns(round(seconds * 1e9))


def format_duration_ns(nanoseconds: int) -> str:
    """Write whole nanoseconds the way Go's Duration.String does."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    ns = abs(nanoseconds)
    if ns < 1_000:
        return f"{sign}{ns}ns"
    if ns < 1_000_000:
        return f"{sign}{_decimal(ns, 1_000)}us"
    if ns < 1_000_000_000:
        return f"{sign}{_decimal(ns, 1_000_000)}ms"
    hours, rest = divmod(ns, _UNIT_NS["h"])
    minutes, rest = divmod(rest, _UNIT_NS["m"])
    text = f"{_decimal(rest, _UNIT_NS['s'])}s"
    # Like Go: once a larger unit is printed, every smaller one is printed too ("1h0m0s").
    if hours:
        text = f"{hours}h{minutes}m{text}"
    elif minutes:
        text = f"{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"
