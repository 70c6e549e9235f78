"""JSON that the API server's YAML decoder reads: the body of a server-side apply.

Why this exists: server-side apply takes YAML only, and JSON is YAML 1.2 but for one thing (surrogate-pair
escapes), which a user's label or host beyond the Basic Multilingual Plane would hit at every apply.

What it must not do: change what the body says; only how one kind of escape is written.
"""

from __future__ import annotations

import json
import re
from typing import Any

# An escaped UTF-16 surrogate pair (\\ud83d\\ude00) that is not itself an escaped backslash and text.
_SURROGATE_PAIR = re.compile(r"(?<!\\)((?:\\\\)*)\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def dumps(body: Any) -> str:
    """``body`` as JSON that the API server's YAML decoder reads (server-side apply takes YAML only).

    JSON is YAML 1.2 except for one thing: YAML has no surrogate-pair escapes, and refuses ``\\ud83d\\ude00``
    ("found invalid Unicode character escape code"), so a character beyond the BMP in a user's label or
    host would fail every apply of the object that carries it. It is written as ``\\U0001f600`` instead.
    """

    def joined(match: re.Match[str]) -> str:
        high, low = int(match[2], 16), int(match[3], 16)
        return f"{match[1]}\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _SURROGATE_PAIR.sub(joined, json.dumps(body))
