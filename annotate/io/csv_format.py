"""CSV with a header row: one document per row (comma-, tab- or semicolon-separated,
whichever the header uses most).

The text column is named by `text_field` ("text" by default). The label column
(`label_field`, "label" by default) is optional; an empty cell means unlabelled, and
several labels (multi-label projects) are separated by "|" or ";", so a label name cannot
contain either. An "external_id" or "id" column becomes the document's external id; every
other column is kept in the document's meta, as text.

A cell that starts with a single quote before a formula character (=, +, -, @, tab,
carriage return) loses that quote: it is how the CSV export (and OWASP's advice against
CSV injection) keeps spreadsheets from running a cell, not part of the text.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterator
from typing import IO, Any

from annotate.io.base import (
    EXTERNAL_ID_FIELDS,
    ImportFormatError,
    ImportRow,
    decoded_lines,
    text_from,
)

LABEL_SEPARATORS = re.compile(r"[|;]")
DELIMITERS = (",", "\t", ";")
# What makes Excel, LibreOffice or Google Sheets read a cell as a formula (OWASP). Quotes
# already in front of one count too, so that a cell quoted on export and unquoted on
# import comes back exactly: "'=x" is written "''=x" and read "'=x".
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")


def formula_quoted(cell: Any) -> Any:
    """`cell` as a spreadsheet shows it but never evaluates: text that would start a
    formula gets a leading single quote. Other values pass through."""
    if isinstance(cell, str) and _FORMULA_START.match(cell):
        return "'" + cell
    return cell


def formula_unquoted(cell: str) -> str:
    """The inverse of formula_quoted."""
    if cell.startswith("'") and _FORMULA_START.match(cell, 1):
        return cell[1:]
    return cell


def delimiter_of(header: str) -> str:
    """The header's most frequent of comma, tab and semicolon (tab-separated exports and
    spreadsheets saved with a semicolon under some locales); a comma on a tie."""
    return max(DELIMITERS, key=lambda candidate: header.count(candidate))


def split_labels(cell: str) -> list[str] | None:
    names = [name.strip() for name in LABEL_SEPARATORS.split(cell) if name.strip()]
    return names or None


def parse(
    file: IO[bytes], *, text_field: str = "text", label_field: str = "label"
) -> Iterator[ImportRow]:
    lines = decoded_lines(file)
    first = next(lines, None)
    if first is None:
        raise ImportFormatError(None, "the file is empty; a CSV import needs a header row")
    reader = csv.reader(
        itertools.chain([first[1]], (line for _number, line in lines)),
        delimiter=delimiter_of(first[1]),
    )
    header: list[str] | None = None
    last_line = 0
    while True:
        # A quoted cell may span lines: the record starts on the line after the last one
        # the reader consumed.
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise ImportFormatError(reader.line_num, f"not valid CSV ({exc})") from None
        last_line = reader.line_num
        row = [formula_unquoted(cell) for cell in row]
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if header is None:
            header = [name.strip() for name in row]
            _check_header(header, text_field=text_field, line=start)
            text_at = header.index(text_field)
            label_at = header.index(label_field) if label_field and label_field in header else None
            id_at = next((header.index(f) for f in EXTERNAL_ID_FIELDS if f in header), None)
            kept = [
                (i, name) for i, name in enumerate(header) if i not in {text_at, label_at, id_at}
            ]
            continue
        if len(row) != len(header):
            raise ImportFormatError(
                start, f"{len(row)} fields where the header has {len(header)}"
            )
        text = text_from(row[text_at], line=start, field_name=text_field)
        yield ImportRow(
            line=start,
            text=text,
            labels=split_labels(row[label_at]) if label_at is not None else None,
            meta={name: row[i] for i, name in kept},
            external_id=row[id_at].strip() if id_at is not None else "",
        )
    if header is None:
        raise ImportFormatError(None, "the file is empty; a CSV import needs a header row")


def _check_header(header: list[str], *, text_field: str, line: int) -> None:
    if text_field not in header:
        raise ImportFormatError(
            line,
            f"no {text_field!r} column in the header (columns: {', '.join(header)}); "
            "name the text column or choose it as the text field",
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise ImportFormatError(line, f"repeated column name(s): {', '.join(duplicated)}")
