"""One API page (a JSON array) -> its records, the API's own text of each, and what was unusable.

Why element by element: one bad record (``NaN``, ``1e400``, a lone surrogate, nesting deeper
than the parser allows, a number where an object belongs) used to make the whole page
unparsable, so the request failed on every retry and the records beside it were never read.
Here the array is first cut into its elements, then each element is parsed on its own: a bad
one becomes a :class:`RejectedRecord` with its text and the reason, and the rest go on.

The cut keeps each element's bytes exactly as the API sent them (:attr:`Page.texts`): the raw
layer stores that text, so integers beyond 64 bits and duplicate keys survive as sent, which a
parse-and-dump round trip would not keep.

Two ways to cut: msgspec's ``list[Raw]`` decoder (C speed, validating) for the usual page, and a
structural scanner (strings, brackets, commas) for a page msgspec refuses because one element
is bad. A body the scanner cannot cut either (a page cut short, HTML) is :class:`PageNotParsable`,
which the caller retries like a 5xx.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

_SPLIT_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_WHITESPACE = b" \t\r\n"
_STRUCTURE = re.compile(rb'[\[\]{},"]')
_STRING_END = re.compile(rb'[\\"]')


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """An element of a page that is not a usable record, kept with the API's text."""

    text: str
    """the element's text as the API sent it (UTF-8; bytes that are not UTF-8 replaced)"""
    reason: str
    process_id: str | None = None
    """``context.processid``, when it could still be read from the text"""
    created_at: str | None = None
    """``metadata.createdAt`` as written, when it could still be read"""
    updated_at: str | None = None


class Page(list[dict[str, Any]]):
    """The usable records of one API page (this list), the API's text of each record
    (:attr:`texts`, same order) and the elements that were not usable (:attr:`rejected`)."""

    __slots__ = ("rejected", "texts")

    def __init__(
        self,
        records: list[dict[str, Any]] | None = None,
        texts: list[str] | None = None,
        rejected: list[RejectedRecord] | None = None,
    ) -> None:
        super().__init__(records or ())
        self.texts: list[str] = texts if texts is not None else []
        self.rejected: list[RejectedRecord] = rejected if rejected is not None else []
        if len(self.texts) != len(self):
            raise ValueError("a page needs exactly one text per record")

    def select(self, positions: list[int]) -> Page:
        """The records (and texts) at ``positions``, with this page's rejected elements."""
        return Page([self[i] for i in positions], [self.texts[i] for i in positions], self.rejected)


class PageNotParsable(ValueError):
    """The body cannot be cut into the elements of a JSON array (cut short, not JSON)."""


class NotAnArray(ValueError):
    """The body is well-formed JSON, but not an array: ``kind`` says what it is."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def parse_page(body: bytes) -> Page:
    """The page's records; elements that are not JSON objects become :class:`RejectedRecord`."""
    elements = split_array(body)
    records: list[dict[str, Any]] = []
    texts: list[str] = []
    rejected: list[RejectedRecord] = []
    for element in elements:
        try:
            value = orjson.loads(element)
        except orjson.JSONDecodeError as exc:
            rejected.append(_rejected(element, f"not valid JSON ({_first_line(exc)})"))
            continue
        if type(value) is not dict:
            rejected.append(_rejected(element, f"{json_kind(value)}, not a JSON object"))
            continue
        records.append(value)
        texts.append(element.decode())
    return Page(records, texts, rejected)


def split_array(body: bytes) -> list[bytes]:
    """The elements of the JSON array ``body``, each exactly as written."""
    try:
        return [bytes(raw) for raw in _SPLIT_ARRAY.decode(body)]
    except msgspec.ValidationError:  # well-formed JSON, but not an array
        raise NotAnArray(_kind_of(body)) from None
    except (msgspec.DecodeError, RecursionError):  # one bad element (or one nested too deep)
        pass
    elements = _scan_array(body)
    if elements is None:
        raise PageNotParsable("the body is not a complete JSON array")
    return elements


def _scan_array(body: bytes) -> list[bytes] | None:
    """Cut by structure alone: strings (with escapes), bracket depth and top-level commas.

    Brackets of different kinds are not matched against each other, and the elements are not
    validated: that is the element parser's job. None when the array never closes.
    """
    stripped = body.strip(_WHITESPACE)
    if not stripped.startswith(b"["):
        return None
    elements: list[bytes] = []
    depth, start, pos = 0, 1, 1
    while (found := _STRUCTURE.search(stripped, pos)) is not None:
        char, pos = stripped[found.start()], found.end()
        if char == 0x22:  # '"'
            pos = _string_end(stripped, pos)
            if pos < 0:
                return None
        elif char in b"[{":
            depth += 1
        elif char in b"]}" and depth > 0:
            depth -= 1
        elif char == 0x5D:  # ']' closing the array
            last = stripped[start : found.start()].strip(_WHITESPACE)
            if last or elements:
                elements.append(last)
            return elements if pos == len(stripped) else None
        elif char == 0x2C and depth == 0:  # ','
            elements.append(stripped[start : found.start()].strip(_WHITESPACE))
            start = pos
    return None


def _string_end(data: bytes, pos: int) -> int:
    """The position after the string whose opening quote ends at ``pos``; -1 if it never ends."""
    while (found := _STRING_END.search(data, pos)) is not None:
        if data[found.start()] == 0x5C:  # a backslash escapes the next byte
            pos = found.start() + 2
            continue
        return found.end()
    return -1


def _rejected(element: bytes, reason: str) -> RejectedRecord:
    text = element.decode("utf-8", errors="replace")
    if not element:
        return RejectedRecord(text, "an empty element")
    process_id, created_at, updated_at = salvage_keys(text)
    return RejectedRecord(text, reason, process_id, created_at, updated_at)


_KEY_TEXT = {
    "processid": re.compile(r'"processid"\s*:\s*"((?:[^"\\]|\\.){1,512})"'),
    "createdAt": re.compile(r'"createdAt"\s*:\s*"((?:[^"\\]|\\.){1,64})"'),
    "updatedAt": re.compile(r'"updatedAt"\s*:\s*"((?:[^"\\]|\\.){1,64})"'),
}


def salvage_keys(text: str) -> tuple[str | None, str | None, str | None]:
    """Best effort: ``context.processid``, ``metadata.createdAt``, ``metadata.updatedAt`` of a
    record that does not parse strictly.

    Python's own parser accepts ``NaN``, ``Infinity``, huge exponents and lone surrogates; for
    what it refuses too (nesting deeper than it recurses) the first ``"key": "..."`` of each name
    in the text is taken. Only for placing and naming the record, never for its content.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        value = None
    if isinstance(value, dict):
        context, metadata = value.get("context"), value.get("metadata")
        context = context if isinstance(context, dict) else {}
        metadata = metadata if isinstance(metadata, dict) else {}
        return (
            _clean(context.get("processid")),
            _clean(metadata.get("createdAt")),
            _clean(metadata.get("updatedAt")),
        )
    found = [pattern.search(text) for pattern in _KEY_TEXT.values()]
    pid, created, updated = (_clean(_unescape(m.group(1))) if m else None for m in found)
    return pid, created, updated


def _unescape(text: str) -> str | None:
    try:
        value = json.loads(f'"{text}"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _clean(value: object) -> str | None:
    """A non-empty string that can be stored as UTF-8 (lone surrogates cannot), else None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _kind_of(body: bytes) -> str:
    try:
        return json_kind(orjson.loads(body))
    except orjson.JSONDecodeError:
        return "JSON that is not an array"


def json_kind(value: object) -> str:
    """``a JSON object``, ``a JSON array``, ... for messages."""
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return "a JSON boolean"
    if isinstance(value, str):
        return "a JSON string"
    return "a JSON number"
