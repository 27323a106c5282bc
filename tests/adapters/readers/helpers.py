"""Small helpers shared by the reader tests."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from lxml import etree

from adapters.readers import InputRejected, RowError, XmlItem

SAMPLES = Path(__file__).resolve().parents[4] / "shared" / "samples"


class Trickle:
    """A binary file object that returns a few bytes per read (short reads)."""

    def __init__(self, data: bytes, sizes: Sequence[int] = (1, 2, 3, 5, 7)) -> None:
        self.data = data
        self.sizes = sizes
        self.pos = 0
        self.calls = 0

    def read(self, size: int, /) -> bytes:
        step = min(size, self.sizes[self.calls % len(self.sizes)])
        self.calls += 1
        piece = self.data[self.pos : self.pos + step]
        self.pos += len(piece)
        return piece


def xml_view(items: Iterable[XmlItem]) -> list[tuple[str, int | None, bytes]]:
    """Materialise items while they are valid (they are cleared afterwards)."""
    return [(i.locator, i.line, etree.tostring(i.element)) for i in items]


def first_bad_utf8(data: bytes) -> int:
    """Offset of the first byte that makes ``data`` invalid UTF-8."""
    with pytest.raises(UnicodeDecodeError) as info:
        data.decode("utf-8")
    return info.value.start


def bilingual(exc: InputRejected | RowError) -> None:
    """Every message names its place in both languages and is not empty."""
    assert exc.locator
    assert exc.message_en.startswith(exc.locator)
    assert exc.message_zh
    assert exc.message_en != exc.message_zh
    assert any("\u4e00" <= c <= "\u9fff" for c in exc.message_zh)
