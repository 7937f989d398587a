"""What every import format shares: the row it yields, the error it raises, line decoding.

A parser is a generator over a binary file object. It never touches the database and never
holds more than one record (or, for a JSON array, one task and a read-ahead chunk) in
memory, so an upload of any size streams through it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from django.conf import settings

# Fields that name a record in the source system: kept as Document.external_id so exports
# and re-imports can be joined back to it, and not duplicated into meta.
EXTERNAL_ID_FIELDS = ("external_id", "id")


class DocumentImportError(Exception):
    """An import that cannot go ahead; nothing was written. `line` is the 1-based line (or
    record) number the problem is on, None when it concerns the whole file."""

    def __init__(self, line: int | None, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line is not None else message)


class ImportFormatError(DocumentImportError):
    """The file itself is malformed: bad encoding, invalid JSON, a missing field, a wrong
    type. Raised by the parsers, before the project's labels are looked at."""


class _NumberRefused(ValueError):
    """A JSON number that Python would take but that cannot be stored or read back."""


def _json_int(text: str) -> int:
    # Python refuses to convert integers this long (a guard against quadratic-time
    # conversion); say so in the file's terms rather than Python's.
    limit = sys.get_int_max_str_digits()
    if limit and len(text.lstrip("-")) > limit:
        raise _NumberRefused(f"a number with more than {limit} digits")
    return int(text)


def _json_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NumberRefused(f"{text} is too large for a number")
    return value


def _json_constant(name: str) -> Any:
    # NaN and Infinity are not JSON: Python's decoder takes them, but neither PostgreSQL's
    # jsonb nor SQLite's JSON check does, and the failure would surface as a database error.
    raise _NumberRefused(f"{name} is not a JSON number")


# The decoder every JSON format uses: standard JSON only, and numbers that can be stored.
JSON_DECODER = json.JSONDecoder(
    parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
)


def json_refusal(exc: ValueError | RecursionError) -> str:
    """Why JSON_DECODER refused a value that is not a plain syntax error (those are
    json.JSONDecodeError, with a position, and are reported by the caller)."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


@dataclass(frozen=True, slots=True)
class ImportRow:
    line: int
    text: str
    # Label names as written in the file; None = unlabelled. Never an empty list.
    labels: list[str] | None
    meta: dict[str, Any] = field(default_factory=dict)
    external_id: str = ""


class Parser(Protocol):
    def __call__(
        self, file: IO[bytes], *, text_field: str = ..., label_field: str = ...
    ) -> Iterator[ImportRow]: ...


def decoded_lines(file: Iterable[bytes]) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) for each line of a UTF-8 file, line ending kept.

    Decoding line by line is what lets a bad byte be reported with its line number; a
    byte-order mark on the first line (Excel writes one) is dropped.
    """
    for number, raw in enumerate(file, start=1):
        if isinstance(raw, str):  # a text-mode file: already decoded
            line = raw
        else:
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ImportFormatError(
                    number,
                    f"not valid UTF-8 (byte {raw[exc.start:exc.start + 1]!r} at column "
                    f"{exc.start + 1}); save the file as UTF-8",
                ) from None
        yield number, line


def text_from(value: Any, *, line: int, field_name: str) -> str:
    """A row's document text, checked: every format reads its text through here."""
    if value is None:
        raise ImportFormatError(line, f"no {field_name!r} field")
    if not isinstance(value, str):
        raise ImportFormatError(
            line, f"{field_name!r} must be a string, not {type(value).__name__}"
        )
    if not value.strip():
        raise ImportFormatError(line, f"empty {field_name!r}")
    # One document is what an annotator reads on one page and what the model truncates
    # anyway; a megabyte "document" is a file read wrongly (a whole corpus on one line).
    most = settings.LABELWISE_MAX_DOCUMENT_CHARS
    if len(value) > most:
        raise ImportFormatError(
            line, f"{field_name!r} is {len(value):,} characters long; a document may have "
            f"at most {most:,} (LABELWISE_MAX_DOCUMENT_CHARS)"
        )
    return value


def labels_from(value: Any, *, line: int, field_name: str) -> list[str] | None:
    """A label field as a list of names: a string, a list of strings, or null/absent/empty
    for an unlabelled row."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [value]
    elif isinstance(value, list) and all(isinstance(item, str) for item in value):
        names = value
    else:
        raise ImportFormatError(
            line,
            f"{field_name!r} must be a label name or a list of label names, "
            f"not {_describe(value)}",
        )
    names = [name.strip() for name in names if name.strip()]
    return names or None


def external_id_from(record: dict[str, Any], *, line: int) -> tuple[str, str | None]:
    """(external id, the field it came from); ("", None) when the record has none."""
    for key in EXTERNAL_ID_FIELDS:
        value = record.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ImportFormatError(
                line, f"{key!r} must be a string or a number, not {_describe(value)}"
            )
        return str(value), key
    return "", None


def _describe(value: Any) -> str:
    if isinstance(value, list):
        return "a list containing " + ", ".join(sorted({type(v).__name__ for v in value}))
    return type(value).__name__
