"""Source paths: the small language that addresses values inside one source record.

Syntax (docs/mapping.md §4 has the worked examples)::

    path      := [ "$" context ] [ "/" ] step ( "/" step )*
    step      := ".." | "@" name | "*" predicate* | name predicate*
    predicate := "[" [ "@" ] name [ ( "=" | "!=" ) literal ] "]"
    name      := unquoted characters except / [ ] = ! " ' , or "a quoted name"
    literal   := 'text' | "text" | bare text up to "]"

XML names match the *local* name in any namespace unless written ``prefix:name``
with the prefix declared in the mapping's ``namespaces``. JSON arrays are entered
automatically (``bao/bbh`` is the ``bbh`` of every element of ``bao``). CSV and
fixed-width paths are plain column names and are not parsed at all (except the
``$header/NAME`` form for a fixed-width header record).

Parsing is done once, at load time; :mod:`adapters.mapping.engine` compiles the
parsed path into a closure for the input format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Path", "PathSyntaxError", "Predicate", "Step", "parse_path"]

StepKind = Literal["child", "attr", "parent", "any"]
_SPECIAL = frozenset("/[]=!\"'")


class PathSyntaxError(ValueError):
    """A path that cannot be parsed; ``position`` is 0-based in the path text."""

    def __init__(self, message: str, text: str, position: int) -> None:
        super().__init__(f"{message} at character {position + 1} of path {text!r}")
        self.position = position


@dataclass(frozen=True, slots=True)
class Predicate:
    """``[name]`` (present and not empty), ``[name='v']`` or ``[name!='v']``."""

    name: str
    attr: bool
    op: Literal["exists", "=", "!="]
    value: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    name: str = ""
    predicates: tuple[Predicate, ...] = ()


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    context: str | None
    absolute: bool
    steps: tuple[Step, ...]

    @property
    def simple(self) -> bool:
        """Only child steps without predicates, from the record itself."""
        return (
            self.context is None
            and not self.absolute
            and all(s.kind == "child" and not s.predicates for s in self.steps)
        )


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, message: str, at: int | None = None) -> PathSyntaxError:
        return PathSyntaxError(message, self.text, self.pos if at is None else at)

    def peek(self, chars: str = "") -> str:
        if self.pos >= len(self.text):
            return ""
        return self.text[self.pos : self.pos + max(1, len(chars))]

    def take(self, chars: str) -> bool:
        if self.text.startswith(chars, self.pos):
            self.pos += len(chars)
            return True
        return False

    def name(self, what: str) -> str:
        if self.take('"'):
            end = self.text.find('"', self.pos)
            if end < 0:
                raise self.error("unterminated quoted name")
            value = self.text[self.pos : end]
            self.pos = end + 1
            if not value:
                raise self.error("empty quoted name", end)
            return value
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _SPECIAL:
            self.pos += 1
        value = self.text[start : self.pos].strip()
        if not value:
            raise self.error(f"expected {what}", start)
        if value.startswith(("@", "$")):
            raise self.error(f"{value[0]!r} cannot start {what}", start)
        return value

    def literal(self) -> str:
        for quote in ("'", '"'):
            if self.take(quote):
                end = self.text.find(quote, self.pos)
                if end < 0:
                    raise self.error("unterminated literal")
                value = self.text[self.pos : end]
                self.pos = end + 1
                return value
        end = self.text.find("]", self.pos)
        if end < 0:
            raise self.error("missing ']'")
        value = self.text[self.pos : end].strip()
        if not value:
            raise self.error("expected a value", self.pos)
        self.pos = end
        return value

    def predicate(self) -> Predicate:
        attr = self.take("@")
        name = self.name("a name in the predicate")
        op: Literal["exists", "=", "!="] = "exists"
        value = ""
        if self.take("!="):
            op = "!="
        elif self.take("="):
            op = "="
        if op != "exists":
            value = self.literal()
        if not self.take("]"):
            raise self.error("expected ']'")
        return Predicate(name=name, attr=attr, op=op, value=value)

    def step(self) -> Step:
        if self.take(".."):
            return Step("parent")
        if self.take("@"):
            return Step("attr", self.name("an attribute name"))
        if self.take("*"):
            kind: StepKind = "any"
            name = ""
        else:
            kind = "child"
            name = self.name("a name")
        predicates = []
        while self.take("["):
            predicates.append(self.predicate())
        return Step(kind, name, tuple(predicates))


def parse_path(text: str) -> Path:
    """Parse ``text``; raises PathSyntaxError with the position of the problem."""
    if not text or not text.strip():
        raise PathSyntaxError("empty path", text, 0)
    s = _Scanner(text)
    context = None
    if s.take("$"):
        end = text.find("/", s.pos)
        context = text[s.pos : end if end >= 0 else len(text)]
        if not context:
            raise s.error("expected a context name after '$'")
        s.pos = end if end >= 0 else len(text)
        if s.pos == len(text):
            return Path(text, context, absolute=False, steps=())
        s.pos += 1
    absolute = context is None and s.take("/")
    steps: list[Step] = []
    while True:
        start = s.pos
        step = s.step()
        if steps and steps[-1].kind == "attr":
            raise s.error("an attribute has no children", start)
        steps.append(step)
        if s.pos == len(text):
            break
        if not s.take("/"):
            raise s.error(f"unexpected {s.peek()!r}")
        if s.pos == len(text):
            raise s.error("path ends with '/'")
    return Path(text, context, absolute, tuple(steps))
