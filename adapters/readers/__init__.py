"""Format readers: the only code that touches raw input bytes.

One streaming, safe reader per format.  Each takes the input as ``bytes`` (or a binary
file object) plus a frozen options model, and yields items:

* ``read_xml``          -> ``XmlItem`` (lxml element, line, XPath-like locator)
* ``read_csv``          -> ``CsvRow`` | ``RowError``
* ``read_json``         -> ``JsonItem`` (top-level array streamed element by element)
* ``read_jsonl``        -> ``JsonItem`` | ``RowError``
* ``read_fixed_width``  -> ``FixedWidthRecord`` | ``RowError``

A whole-input problem raises ``InputRejected``; a bad row is yielded as ``RowError``
and reading goes on.  Readers never open files, never touch the network, never resolve
entities, and keep memory flat whatever the input size.
"""

from __future__ import annotations

from adapters.readers._source import ENCODINGS, BinarySource, Encoding, Source
from adapters.readers.csv_reader import CsvOptions, CsvRow, read_csv
from adapters.readers.errors import CODES, InputRejected, RowError
from adapters.readers.fixed_width import (
    FixedField,
    FixedWidthOptions,
    FixedWidthRecord,
    RecordLayout,
    read_fixed_width,
)
from adapters.readers.json_reader import (
    JsonItem,
    JsonOptions,
    JsonValue,
    read_json,
    read_jsonl,
)
from adapters.readers.xml_reader import XmlItem, XmlOptions, read_xml

__all__ = [
    "CODES",
    "ENCODINGS",
    "BinarySource",
    "CsvOptions",
    "CsvRow",
    "Encoding",
    "FixedField",
    "FixedWidthOptions",
    "FixedWidthRecord",
    "InputRejected",
    "JsonItem",
    "JsonOptions",
    "JsonValue",
    "RecordLayout",
    "RowError",
    "Source",
    "XmlItem",
    "XmlOptions",
    "read_csv",
    "read_fixed_width",
    "read_json",
    "read_jsonl",
    "read_xml",
]
