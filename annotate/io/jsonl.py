"""JSON Lines: one JSON object per line.

{"text": "...", "label": "sport"}            single label
{"text": "...", "label": ["sport", "tech"]}  several (multi-label projects); "labels" works too
{"text": "...", "source": "rss"}             unlabelled; other fields go to meta

An "external_id" or "id" field becomes the document's external id. A nested "meta" object
is flattened into the document's meta (fields at the top level win), so that files this
project exports, and Prodigy-style files, import without a meta-inside-meta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, Any

from annotate.io.base import (
    JSON_DECODER,
    ImportFormatError,
    ImportRow,
    decoded_lines,
    external_id_from,
    json_refusal,
    labels_from,
    text_from,
)


def records(file: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; shared with the Prodigy format."""
    for number, line in decoded_lines(file):
        if not line.strip():
            continue
        try:
            record = JSON_DECODER.decode(line)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(
                number, f"not valid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:
            raise ImportFormatError(number, f"not valid JSON ({json_refusal(exc)})") from None
        if not isinstance(record, dict):
            raise ImportFormatError(
                number, f"each line must be a JSON object, not {type(record).__name__}"
            )
        yield number, record


def merged_meta(record: dict[str, Any], used: set[str]) -> dict[str, Any]:
    meta = {key: value for key, value in record.items() if key not in used and key != "meta"}
    nested = record.get("meta")
    if isinstance(nested, dict):
        for key, value in nested.items():
            meta.setdefault(key, value)
    elif nested is not None:
        meta["meta"] = nested
    return meta


def parse(
    file: IO[bytes], *, text_field: str = "text", label_field: str = "label"
) -> Iterator[ImportRow]:
    for number, record in records(file):
        text = text_from(record.get(text_field), line=number, field_name=text_field)
        # "labels" is what people write for multi-label data; accept either spelling.
        label_key = label_field
        if label_field not in record and label_field == "label" and "labels" in record:
            label_key = "labels"
        labels = labels_from(record.get(label_key), line=number, field_name=label_key)
        external_id, id_key = external_id_from(record, line=number)
        yield ImportRow(
            line=number,
            text=text,
            labels=labels,
            meta=merged_meta(record, {text_field, label_key, id_key or ""}),
            external_id=external_id,
        )
