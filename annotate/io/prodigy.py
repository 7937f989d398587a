"""Prodigy JSONL (`prodigy db-out`): one task per line.

Binary text classification: {"text", "label": "SPORT", "answer": "accept"|"reject"|"ignore"}
- an accepted task is labelled with its "label"; a rejected or ignored one only says what
the text is *not*, so it imports unlabelled.
Choice interfaces: {"text", "options": [...], "accept": ["SPORT"], "answer": "accept"}.
A task without an "answer" has not been annotated (its "label" is the question asked) and
imports unlabelled.

Prodigy's bookkeeping fields (leading underscore, "answer", "options", "spans", "tokens")
are dropped; "meta" and any other fields are kept in the document's meta.

A limitation: Prodigy writes one task per (text, question), so a text asked about several
labels appears on several lines; the first line for a text is imported and later ones are
reported as duplicates rather than merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

from annotate.io.base import (
    ImportFormatError,
    ImportRow,
    external_id_from,
    labels_from,
    text_from,
)
from annotate.io.jsonl import merged_meta, records

ANSWERS = {"accept", "reject", "ignore"}
BOOKKEEPING = {"answer", "accept", "options", "spans", "tokens", "html", "config"}


def _labels(record: dict[str, Any], *, line: int, label_field: str) -> list[str] | None:
    answer = record.get("answer")
    if answer is None:
        return None
    if not isinstance(answer, str) or answer not in ANSWERS:
        raise ImportFormatError(
            line, f"'answer' must be one of accept, reject, ignore, not {answer!r}"
        )
    if answer != "accept":
        return None
    if "accept" in record:
        accepted = record["accept"]
        if not isinstance(accepted, list):
            raise ImportFormatError(
                line, f"'accept' must be a list of option ids, not {type(accepted).__name__}"
            )
        odd = [item for item in accepted if not isinstance(item, str | int)]
        if odd:
            raise ImportFormatError(
                line, "'accept' must be a list of option ids, not a list containing "
                f"{type(odd[0]).__name__}"
            )
        options = record.get("options") or []
        if not isinstance(options, list):
            raise ImportFormatError(
                line, f"'options' must be a list, not {type(options).__name__}"
            )
        # Prodigy stores option ids; they are usually the label names, but where they are
        # numbers the option's display text is the name.
        texts = {
            option.get("id"): option.get("text")
            for option in options
            if isinstance(option, dict) and isinstance(option.get("id"), str | int)
        }
        names = [
            item if isinstance(item, str) else texts.get(item) or str(item) for item in accepted
        ]
        return labels_from(names, line=line, field_name="accept")
    return labels_from(record.get(label_field), line=line, field_name=label_field)


def parse(
    file: IO[bytes], *, text_field: str = "text", label_field: str = "label"
) -> Iterator[ImportRow]:
    for number, record in records(file):
        text = text_from(record.get(text_field), line=number, field_name=text_field)
        labels = _labels(record, line=number, label_field=label_field)
        external_id, id_key = external_id_from(record, line=number)
        used = {text_field, label_field, id_key or ""} | BOOKKEEPING
        meta = merged_meta(record, used)
        yield ImportRow(
            line=number,
            text=text,
            labels=labels,
            meta={key: value for key, value in meta.items() if not key.startswith("_")},
            external_id=external_id,
        )
