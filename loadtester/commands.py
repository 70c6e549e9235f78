"""The load tester's ``type: cmd`` tasks: which commands may run, and running one with a deadline.

Why this module exists: Flagger's tester runs any command a webhook sends; Fledge's runs only the exact
strings given to ``--allow-command``.  ``refusal`` is that check and its explanation, ``run_command`` runs a
command that passed it and always reaps the process.

What it must not do: run a command that ``refusal`` refused (callers check first), match commands loosely
(prefixes, shell-word splitting), leave a process behind at a timeout or a cancellation, or hold more of its
output than is answered (``curl`` of a tenant's URL may print gigabytes: the output is read as it comes, its
last ``OUTPUT_CHARS`` kept and the rest dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shlex
import signal
from collections.abc import Set

from apis import durations

OUTPUT_CHARS = 4_000
_KEPT_BYTES = 4 * OUTPUT_CHARS  # enough bytes for OUTPUT_CHARS characters of UTF-8, whatever they are
_CHUNK = 64 * 1024


def refusal(command: str, allowed: Set[str]) -> str | None:
    """None when ``command`` is exactly one of ``allowed``, else why it may not run and how to allow it."""
    if command in allowed:
        return None
    if not allowed:
        return ("command refused: the load tester was started without any --allow-command; "
                f"restart it with --allow-command {shlex.quote(command)} to allow this one")
    return (f"command refused: the load tester was started without --allow-command "
            f"{shlex.quote(command)} (only the exact strings given to --allow-command run)")


@dataclasses.dataclass(frozen=True)
class CommandResult:
    returncode: int | None  # None: killed at the timeout
    output: str


# The task types that run a command, and the shell each runs it with (Flagger's tester: sh for cmd, bash for bash).
SHELLS = {"cmd": "/bin/sh", "bash": "bash"}


async def run_command(command: str, timeout: float, shell: str = SHELLS["cmd"]) -> CommandResult:
    """Run an (allowlisted) command with ``shell -c``; kill it, and every process it started, at the timeout or
    when cancelled."""
    # A session of its own: `curl ... | grep ...` or `sleep 4; echo` start children that hold the output pipe;
    # killing only the shell would leave them running, and the wait for the pipe would outlast the timeout.
    process = await asyncio.create_subprocess_exec(
        shell, "-c", command, start_new_session=True,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output = await _tail(process)
            await process.wait()
    except BaseException as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        # Read the pipe to its end: a reader paused on a full buffer never sees it close, and wait() waits for it.
        assert process.stdout is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                while await process.stdout.read(_CHUNK):
                    pass
        await process.wait()
        if isinstance(exc, TimeoutError):
            return CommandResult(None, f"killed after {durations.format_duration(timeout)} (--timeout)")
        raise
    text = output.decode(errors="replace")
    return CommandResult(process.returncode, text[-OUTPUT_CHARS:])


async def _tail(process: asyncio.subprocess.Process) -> bytes:
    """The last ``_KEPT_BYTES`` of the process's output, read until it closes; the rest is read and dropped."""
    assert process.stdout is not None
    kept = bytearray()
    while chunk := await process.stdout.read(_CHUNK):
        kept += chunk
        if len(kept) > 2 * _KEPT_BYTES:  # trimmed in batches, not at every chunk
            del kept[:-_KEPT_BYTES]
    return bytes(kept[-_KEPT_BYTES:])
