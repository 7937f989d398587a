"""Label Studio JSON export: a JSON array of tasks.

[{"id": 7, "data": {"text": "...", "source": "rss"},
  "annotations": [{"result": [{"type": "choices", "value": {"choices": ["sport"]}}],
                   "was_cancelled": false}]},
 ...]

The first annotation that was not cancelled gives the labels (all its "choices" results);
predictions are ignored, and tasks without annotations (or a plain import-style list of
{"data": {...}} or {"text": ...} objects) import unlabelled. The task "id" becomes the
external id, the other "data" fields the meta.

The array is read incrementally: one task at a time is decoded from a read-ahead buffer,
so memory holds about one task (at most twice it), never the whole export, and the time
taken is linear in the file's size however long a task is. A single task larger than
MAX_TASK_BYTES is refused (it would otherwise be buffered whole while looking for its
end, and no real document is that long).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from typing import IO, Any

from annotate.io.base import (
    JSON_DECODER,
    ImportFormatError,
    ImportRow,
    external_id_from,
    json_refusal,
    labels_from,
    text_from,
)

CHUNK_BYTES = 1 << 16
MAX_TASK_BYTES = 64 << 20
_WHITESPACE = " \t\r\n"


class _Reader:
    """A decoded read-ahead buffer over a binary file that knows the line number of any
    position in it (so errors name a line even in a pretty-printed export).

    Linear time in the file's length: chunks read while a task is incomplete are kept in a
    list and joined into the buffer only when the unread part has grown to the size of the
    buffered task, so a task spread over k chunks is decoded O(log k) times and copied
    O(1) times over (decoding it again after every chunk took 28 s for one 50 MB task).
    """

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.buf = ""
        self.pos = 0
        self.line = 1  # the line number at self.pos
        self.eof = False
        self.first = True
        self.pending: list[str] = []  # read after self.buf, not joined to it yet
        self.pending_chars = 0

    def read(self) -> bool:
        """Reads the next chunk into `pending`; False at end of file."""
        if self.eof:
            return False
        raw = self.file.read(CHUNK_BYTES)
        final = not raw
        try:
            text = self.decoder.decode(raw, final=final)
        except UnicodeDecodeError as exc:
            bad_line = (self.line + self.buf.count("\n", self.pos)
                        + sum(piece.count("\n") for piece in self.pending)
                        + raw.count(b"\n", 0, exc.start))
            raise ImportFormatError(
                bad_line, "not valid UTF-8; save the file as UTF-8"
            ) from None
        if self.first and text:
            text = text.removeprefix("\ufeff")
            self.first = False
        if text:
            self.pending.append(text)
            self.pending_chars += len(text)
        self.eof = final
        return bool(text) or not final

    def join(self) -> None:
        """Moves what was read into the buffer, dropping what has been consumed, so the
        buffer never holds more than the current task and what was read past it."""
        if self.pending:
            self.buf = self.buf[self.pos:] + "".join(self.pending)
            self.pos = 0
            self.pending.clear()
            self.pending_chars = 0

    def more(self) -> bool:
        """Reads the next chunk into the buffer; False at end of file."""
        read = self.read()
        self.join()
        return read

    def grow(self) -> bool:
        """Reads on until the unread part of the buffer has doubled, reached MAX_TASK_BYTES
        or the end of the file: the current value is decoded again only then. False when
        nothing was read."""
        have = len(self.buf) - self.pos
        want = max(min(have, MAX_TASK_BYTES - have), 1)
        read = False
        while self.pending_chars < want and self.read():
            read = True
        self.join()
        return read

    def advance(self, to: int) -> None:
        self.line += self.buf.count("\n", self.pos, to)
        self.pos = to

    def skip_whitespace(self) -> str:
        """The next non-blank character, without consuming it; "" at end of file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.advance(self.pos + 1)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def expect(self, allowed: str, what: str) -> str:
        char = self.skip_whitespace()
        if not char or char not in allowed:
            found = repr(char) if char else "the end of the file"
            raise ImportFormatError(self.line, f"not valid JSON: expected {what}, found {found}")
        self.advance(self.pos + 1)
        return char

    def value(self, decoder: json.JSONDecoder, what: str) -> tuple[Any, int]:
        """Decodes the JSON value at the current position; (value, its first line)."""
        while True:
            try:
                value, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # The value may just be cut off by the end of the buffer: read on, unless
                # the file is over or the value is already implausibly long.
                if len(self.buf) - self.pos < MAX_TASK_BYTES and self.grow():
                    continue
                if len(self.buf) - self.pos >= MAX_TASK_BYTES:
                    raise ImportFormatError(
                        self.line, f"{what} is longer than {MAX_TASK_BYTES >> 20} MB with no "
                        "end in sight; no document is that long") from None
                # Reported on the line the task starts, with where the parser gave up.
                line = self.line + self.buf.count("\n", self.pos, exc.pos)
                column = exc.pos - self.buf.rfind("\n", 0, exc.pos)
                raise ImportFormatError(
                    self.line,
                    f"{what}: not valid JSON ({exc.msg} at line {line} column {column})",
                ) from None
            except (ValueError, RecursionError) as exc:
                # Well-formed so far but refused (a number that cannot be stored, nesting
                # deeper than Python's recursion limit): reading on would not help.
                raise ImportFormatError(
                    self.line, f"{what}: not valid JSON ({json_refusal(exc)})"
                ) from None
            line = self.line
            self.advance(end)
            return value, line


def tasks(file: IO[bytes]) -> Iterator[tuple[int, int, Any]]:
    """(task number, line number, task) for each element of the top-level array."""
    reader = _Reader(file)
    decoder = JSON_DECODER
    reader.expect("[", "a JSON array of tasks ('[')")
    if reader.skip_whitespace() == "]":
        reader.advance(reader.pos + 1)
    else:
        number = 0
        while True:
            reader.skip_whitespace()
            number += 1
            task, line = reader.value(decoder, f"task {number}")
            yield number, line, task
            if reader.expect(",]", "',' or ']' after a task") == "]":
                break
    if reader.skip_whitespace():
        raise ImportFormatError(reader.line, "not valid JSON: text after the closing ']'")


def _choices(task: dict[str, Any], *, line: int, where: str) -> list[str] | None:
    annotations = task.get("annotations") or task.get("completions") or []
    if not isinstance(annotations, list):
        raise ImportFormatError(line, f"{where}: 'annotations' must be a list")
    for annotation in annotations:
        if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
            continue
        names: list[str] = []
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise ImportFormatError(
                line, f"{where}: an annotation's 'result' must be a list, not "
                f"{type(results).__name__}"
            )
        for result in results:
            if not isinstance(result, dict) or result.get("type") != "choices":
                continue
            value = result.get("value") or {}
            if not isinstance(value, dict):
                raise ImportFormatError(
                    line, f"{where}: a result's 'value' must be an object, not "
                    f"{type(value).__name__}"
                )
            chosen = value.get("choices")
            names.extend(labels_from(chosen, line=line, field_name="choices") or [])
        return names or None
    return None


def parse(
    file: IO[bytes], *, text_field: str = "text", label_field: str = "label"
) -> Iterator[ImportRow]:
    """`label_field` is unused: Label Studio keeps labels in annotation results."""
    for number, line, task in tasks(file):
        where = f"task {number}"
        if not isinstance(task, dict):
            raise ImportFormatError(line, f"{where} must be a JSON object")
        data = task.get("data", task)
        if not isinstance(data, dict):
            raise ImportFormatError(line, f"{where}: 'data' must be an object")
        try:
            text = text_from(data.get(text_field), line=line, field_name=text_field)
            external_id, _key = external_id_from(task, line=line)
        except ImportFormatError as exc:
            raise ImportFormatError(line, f"{where}: {exc.message}") from None
        skip = {text_field} if "data" in task else {text_field, "id", "annotations",
                                                    "predictions", "completions"}
        yield ImportRow(
            line=line,
            text=text,
            labels=_choices(task, line=line, where=where),
            meta={key: value for key, value in data.items() if key not in skip},
            external_id=external_id,
        )
