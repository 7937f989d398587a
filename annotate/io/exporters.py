"""Exports of a project's documents and labels: JSON Lines, CSV, a Hugging Face dataset.

One row per document: id, external_id, text, the final label(s) by name, the split
(pool/holdout), the guideline versions its annotations were made under, meta, and, when
asked, each annotator's answer and the guideline version it was made under.

The text exports are generators of lines, for a StreamingHttpResponse or a file: documents
are read with a chunked iterator and each chunk's annotations with one more query, so
memory holds one chunk and the query count grows with chunks, not documents.

Label names: "label" holds a name (single-label) or a list of names (multi-label) in
JSON Lines, and names joined with "|" in CSV, which is what the importers read back.

CSV cells that a spreadsheet would run as a formula (OWASP's "CSV injection": a cell
starting with =, +, -, @, a tab or a carriage return) are prefixed with a single quote
unless the raw output is asked for; the CSV importer takes that quote off again.
"""

from __future__ import annotations

import csv
import json
import shutil
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from annotate.io.csv_format import formula_quoted
from annotate.models import Annotation, Document, Project

CHUNK_SIZE = 2000
EXPORT_FORMATS = {
    # format -> (content type, file name suffix)
    "jsonl": ("application/x-ndjson", ".jsonl"),
    "csv": ("text/csv; charset=utf-8", ".csv"),
    "hf": ("application/zip", "-hf.zip"),
}


@dataclass
class AnswerOf:
    labels: list[str]
    guideline_version: int | None
    source: str
    # The imported file's name, for an imported label ("" if it came without one).
    imported_from: str = ""


@dataclass
class ExportRow:
    id: int
    external_id: str
    text: str
    labels: list[str] | None
    split: str
    meta: dict[str, Any]
    # Annotators' answers by username; an imported label is never one of them.
    answers: dict[str, AnswerOf] = field(default_factory=dict)
    imported: AnswerOf | None = None

    @property
    def guideline_versions(self) -> list[int]:
        every = [*self.answers.values(), *([self.imported] if self.imported else [])]
        return sorted({a.guideline_version for a in every if a.guideline_version})

    @property
    def imported_from(self) -> str | None:
        """The file the labels were imported from; None unless they came from a named
        file."""
        return (self.imported.imported_from or None) if self.imported else None


def export_filename(project: Project, fmt: str) -> str:
    return f"labelwise-project-{project.pk}{EXPORT_FORMATS[fmt][1]}"


def _documents(project: Project, *, labelled_only: bool) -> QuerySet[Document]:
    documents = Document.objects.filter(project=project)
    if labelled_only:
        documents = documents.filter(final_labels__isnull=False)
    return documents


def export_rows(
    project: Project, *, labelled_only: bool = True, chunk_size: int = CHUNK_SIZE,
    split: str | None = None,
) -> Iterator[ExportRow]:
    """Every document of the project in id order (only those with final labels unless
    `labelled_only` is False; only those of `split` when given), with all its
    annotations."""
    names = dict(project.labels.values_list("id", "name"))

    def name_of(label_id: int) -> str:
        return names.get(label_id, str(label_id))

    documents = _documents(project, labelled_only=labelled_only).order_by("id")
    if split is not None:
        documents = documents.filter(split=split)
    values = documents.values_list("id", "external_id", "text", "final_labels", "split", "meta")
    chunk: list[ExportRow] = []
    for doc_id, external_id, text, final, split, meta in values.iterator(chunk_size=chunk_size):
        chunk.append(
            ExportRow(
                id=doc_id,
                external_id=external_id,
                text=text,
                labels=[name_of(i) for i in final] if final is not None else None,
                split=split,
                meta=meta or {},
            )
        )
        if len(chunk) >= chunk_size:
            yield from _with_answers(project, chunk, name_of)
            chunk = []
    if chunk:
        yield from _with_answers(project, chunk, name_of)


def _with_answers(
    project: Project, chunk: list[ExportRow], name_of: Callable[[int], str]
) -> list[ExportRow]:
    # An id range rather than an IN list: one indexed query per chunk whatever its size.
    answers = Annotation.objects.filter(
        document__project=project, document_id__gte=chunk[0].id, document_id__lte=chunk[-1].id
    ).values_list(
        "document_id", "annotator__username", "labels", "guideline_version__version", "source",
        "import_job__file_name",
    )
    by_document: dict[int, dict[str, AnswerOf]] = defaultdict(dict)
    imported: dict[int, AnswerOf] = {}
    for doc_id, username, labels, version, source, file_name in answers.order_by("id"):
        answer = AnswerOf(
            labels=[name_of(i) for i in labels], guideline_version=version, source=source,
            imported_from=(file_name or "") if source == Annotation.Source.IMPORT else "",
        )
        if source == Annotation.Source.IMPORT or username is None:
            imported[doc_id] = answer
        else:
            by_document[doc_id][username] = answer
    for row in chunk:
        row.answers = by_document.get(row.id, {})
        row.imported = imported.get(row.id)
    return chunk


def export_jsonl(
    project: Project, *, labelled_only: bool = True, include_annotators: bool = True
) -> Iterator[str]:
    """One JSON object per line:

    {"id", "external_id", "text", "label" (name; a list of names for multi-label projects;
     null if not final), "split", "guideline_versions" (distinct versions the document's
     annotations were made under), "imported" (its labels came from an import),
     "imported_from" (the imported file's name, or null), "meta",
     and with include_annotators: "annotators" {username: label(s)},
     "annotator_guideline_versions" {username: version or null}; an imported label is
     not an annotator's answer and appears in neither}
    """
    task = project.task
    for row in export_rows(project, labelled_only=labelled_only):
        record: dict[str, Any] = {
            "id": row.id,
            "external_id": row.external_id,
            "text": row.text,
            "label": task.export_value(row.labels),
            "split": row.split,
            "guideline_versions": row.guideline_versions,
            "imported": row.imported is not None,
            "imported_from": row.imported_from,
            "meta": row.meta,
        }
        if include_annotators:
            record["annotators"] = {
                user: task.export_value(a.labels) for user, a in row.answers.items()
            }
            record["annotator_guideline_versions"] = {
                user: a.guideline_version for user, a in row.answers.items()
            }
        yield json.dumps(record, ensure_ascii=False) + "\n"


class _Line:
    """A csv.writer target that hands back each formatted line instead of storing it."""

    def write(self, value: str) -> str:
        return value


def export_csv(
    project: Project,
    *,
    labelled_only: bool = True,
    include_annotators: bool = True,
    raw: bool = False,
    bom: bool = False,
) -> Iterator[str]:
    """CSV with a header: id, external_id, text, label ("|"-joined names), split,
    guideline_versions ("|"-joined), imported_from (the file imported labels came from),
    meta (JSON), then with include_annotators a pair of columns per annotator:
    annotator:<username> and guideline_version:<username> (imported labels have none).

    Cells that would start a spreadsheet formula get a leading single quote unless `raw`;
    `bom` starts the file with a UTF-8 byte-order mark (Excel needs one to read UTF-8 on
    some systems; Python's csv module and most other tools read it as part of the first
    column's name, so it is off by default)."""
    usernames: list[str] = []
    if include_annotators:
        usernames = list(
            Annotation.objects.filter(
                document__project=project, source=Annotation.Source.HUMAN,
                annotator__isnull=False,
            )
            .order_by("annotator__username")
            .values_list("annotator__username", flat=True)
            .distinct()
        )
    writer = csv.writer(_Line())

    def line(cells: list[Any]) -> str:
        return writer.writerow(cells if raw else [formula_quoted(cell) for cell in cells])

    header = ["id", "external_id", "text", "label", "split", "guideline_versions",
              "imported_from", "meta"]
    for username in usernames:
        header += [f"annotator:{username}", f"guideline_version:{username}"]
    # The importers drop a byte-order mark, so either way the file imports back.
    yield ("\ufeff" if bom else "") + line(header)
    for row in export_rows(project, labelled_only=labelled_only):
        cells: list[Any] = [
            row.id,
            row.external_id,
            row.text,
            "|".join(row.labels or []),
            row.split,
            "|".join(map(str, row.guideline_versions)),
            row.imported_from or "",
            json.dumps(row.meta, ensure_ascii=False) if row.meta else "",
        ]
        for username in usernames:
            answer = row.answers.get(username)
            cells += (
                ["|".join(answer.labels), answer.guideline_version or ""]
                if answer
                else ["", ""]
            )
        yield line(cells)


# The dataset's splits, by Document.split.
HF_SPLITS = {"train": Document.Split.POOL, "holdout": Document.Split.HOLDOUT}
# Columns every row has; a metadata key with one of these names becomes meta_<key>.
HF_FIXED_COLUMNS = ("id", "external_id", "text", "label", "labels", "guideline_versions",
                    "imported_from", "annotations")
# Metadata keys beyond this many (a messy import can have thousands) share one JSON column.
HF_MAX_META_COLUMNS = 100
HF_META_OTHER = "meta_other"


def _meta_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64"
    if isinstance(value, float):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "json"


def _merge_kinds(a: str | None, b: str) -> str:
    if a is None or a == b:
        return b
    if {a, b} == {"int64", "float64"}:
        return "float64"
    return "json"  # mixed types: the value's JSON text, so nothing is lost


@dataclass(frozen=True)
class HfMetaColumns:
    """How documents' metadata becomes typed columns: key -> (column name, kind), where
    kind is a `datasets.Value` dtype or "json" (the value's JSON text, for nested or mixed
    values). Keys past HF_MAX_META_COLUMNS go, as JSON, to `meta_other`."""

    columns: dict[str, tuple[str, str]]
    has_other: bool

    def features(self) -> dict[str, Any]:
        from datasets import Value

        typed = {
            name: Value("string" if kind == "json" else kind)
            for name, kind in self.columns.values()
        }
        return typed | ({HF_META_OTHER: Value("string")} if self.has_other else {})

    def values(self, meta: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {name: None for name, _ in self.columns.values()}
        other = {}
        for key, value in meta.items():
            if key not in self.columns:
                other[key] = value
                continue
            name, kind = self.columns[key]
            if value is None:
                continue
            if kind == "json":
                value = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            elif kind == "float64":
                value = float(value)
            out[name] = value
        if self.has_other:
            out[HF_META_OTHER] = json.dumps(other, ensure_ascii=False) if other else None
        return out


def hf_meta_columns(project: Project, *, labelled_only: bool) -> HfMetaColumns:
    """One pass over the exported documents' metadata (chunked, one dict at a time) to
    find its keys and a type for each."""
    kinds: dict[str, str | None] = {}
    metas = _documents(project, labelled_only=labelled_only).order_by("id").values_list(
        "meta", flat=True
    )
    for meta in metas.iterator(chunk_size=CHUNK_SIZE):
        for key, value in (meta or {}).items():
            kind = kinds.get(key)
            kinds[key] = kind if value is None else _merge_kinds(kind, _meta_kind(value))
    keys = sorted(kinds)
    kept, has_other = keys[:HF_MAX_META_COLUMNS], len(keys) > HF_MAX_META_COLUMNS
    taken = set(HF_FIXED_COLUMNS) | ({HF_META_OTHER} if has_other else set())
    columns = {}
    for key in kept:
        name = f"meta_{key}" if key in taken else key
        taken.add(name)
        # A key whose values were all null has no type to go by: text.
        columns[key] = (name, kinds[key] or "string")
    return HfMetaColumns(columns=columns, has_other=has_other)


def _hf_features(project: Project, include_annotators: bool, meta: HfMetaColumns) -> Any:
    from datasets import Features, List, Value

    names = list(project.labels.values_list("name", flat=True))
    columns: dict[str, Any] = {
        "id": Value("int64"),
        "external_id": Value("string"),
        "text": Value("string"),
    }
    column, feature = project.task.hf_column(names)
    columns[column] = feature
    columns |= {
        "guideline_versions": List(Value("int64")),
        "imported_from": Value("string"),
    }
    columns |= meta.features()
    if include_annotators:
        columns["annotations"] = List(
            {
                "annotator": Value("string"),
                "labels": List(Value("string")),
                "guideline_version": Value("int64"),
                "source": Value("string"),
                "imported_from": Value("string"),
            }
        )
    return Features(columns)


def _hf_examples(
    project_id: int, split: str, labelled_only: bool, include_annotators: bool,
    meta: HfMetaColumns,
) -> Iterator[dict[str, Any]]:
    project = Project.objects.get(pk=project_id)
    column, _ = project.task.hf_column([])
    index = {name: i for i, name in enumerate(project.labels.values_list("name", flat=True))}
    for row in export_rows(project, labelled_only=labelled_only, split=split):
        example: dict[str, Any] = {"id": row.id, "external_id": row.external_id, "text": row.text}
        example[column] = project.task.hf_value(row.labels, index)
        example |= {
            "guideline_versions": row.guideline_versions,
            "imported_from": row.imported_from,
        }
        example |= meta.values(row.meta)
        if include_annotators:
            answers = [(user, a) for user, a in row.answers.items()]
            if row.imported is not None:
                answers.append((None, row.imported))
            example["annotations"] = [
                {
                    "annotator": user,
                    "labels": a.labels,
                    "guideline_version": a.guideline_version,
                    "source": a.source,
                    "imported_from": a.imported_from or None,
                }
                for user, a in answers
            ]
        yield example


def export_hf_dataset(
    project: Project,
    out_dir: str | Path,
    *,
    labelled_only: bool = True,
    include_annotators: bool = False,
) -> Path:
    """Writes the project as a Hugging Face `DatasetDict` folder (`save_to_disk`), which
    `datasets.load_from_disk(out_dir)` reads back, with two splits: "train" (the pool's
    documents) and "holdout" (the fixed evaluation set), both always present.

    Columns: id, external_id, text; label (a ClassLabel over the project's label names,
    -1 when not final) for single-label projects, or labels (a list of ClassLabel) for
    multi-label ones; guideline_versions; imported_from (the file imported labels came
    from, or null); one typed column per metadata key (see hf_meta_columns: a key that
    clashes with a column above is meta_<key>; nested or mixed values are JSON text);
    and with include_annotators annotations (a list of {annotator (null for an imported
    label), labels, guideline_version, source, imported_from}).

    Rows stream through Arrow files in a private temporary cache, never all in memory.
    """
    from datasets import Dataset, DatasetDict
    from datasets.utils import logging as hf_logging

    out = Path(out_dir)
    meta = hf_meta_columns(project, labelled_only=labelled_only)
    features = _hf_features(project, include_annotators, meta)
    # Progress bars would only clutter the server log and the command's output.
    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with tempfile.TemporaryDirectory(prefix="labelwise-hf-cache-") as cache:
            splits, shards = {}, {}
            for name, split in HF_SPLITS.items():
                documents = _documents(project, labelled_only=labelled_only)
                if not documents.filter(split=split).exists():
                    # from_generator refuses to build a dataset from no rows at all.
                    splits[name] = Dataset.from_dict(
                        {column: [] for column in features}, features=features
                    )
                    # Left to itself, save_to_disk writes no shard for no rows, and the
                    # folder would not load.
                    shards[name] = 1
                    continue
                splits[name] = Dataset.from_generator(
                    _hf_examples,
                    features=features,
                    cache_dir=cache,
                    gen_kwargs={
                        "project_id": project.pk,
                        "split": split,
                        "labelled_only": labelled_only,
                        "include_annotators": include_annotators,
                        "meta": meta,
                    },
                    # A fresh fingerprint: a cached earlier export must never be served.
                    fingerprint=uuid.uuid4().hex,
                )
            dataset = DatasetDict(splits)
            dataset.save_to_disk(str(out), num_shards={name: shards.get(name) for name in splits})
            del dataset, splits
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    return out


def export_hf_zip(
    project: Project, *, labelled_only: bool = True, include_annotators: bool = False
) -> Path:
    """The Hugging Face dataset folder zipped, for download. The zip lives in a new
    temporary folder that the caller deletes (`shutil.rmtree(path.parent)`) once sent."""
    workdir = Path(tempfile.mkdtemp(prefix="labelwise-export-"))
    try:
        name = f"labelwise-project-{project.pk}-hf"
        export_hf_dataset(
            project,
            workdir / name,
            labelled_only=labelled_only,
            include_annotators=include_annotators,
        )
        archive = shutil.make_archive(str(workdir / name), "zip", root_dir=workdir, base_dir=name)
        shutil.rmtree(workdir / name)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return Path(archive)
