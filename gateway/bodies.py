"""Reading a whole HTTP body with a size limit (aiohttp's ``read(n)`` may return less)."""

from __future__ import annotations

from aiohttp import StreamReader

__all__ = ["TooLarge", "read_limited"]

CHUNK = 256 * 1024


class TooLarge(Exception):
    """The body is longer than the limit."""


async def read_limited(stream: StreamReader, limit: int) -> bytes:
    """All of ``stream`` up to ``limit`` bytes; TooLarge beyond that."""
    parts: list[bytes] = []
    total = 0
    async for chunk in stream.iter_chunked(CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f"more than {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)
