"""Label exports: JSON Lines, CSV and the Hugging Face dataset carry the final label, each
annotator's answer and the guideline version it was made under."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from pathlib import Path

import datasets
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate import services
from annotate.io import exporters
from annotate.io.importer import documents_import
from annotate.models import Document, Project, text_hash
from tests.conftest import hand_out


def label_id(project, name: str) -> int:  # type: ignore[no-untyped-def]
    return project.labels.get(name=name).pk


def add_documents(project, texts: list[str], **fields) -> list[Document]:  # type: ignore[no-untyped-def]
    return Document.objects.bulk_create(
        Document(project=project, text=t, text_hash=text_hash(t), rand=i / 1000, **fields)
        for i, t in enumerate(texts)
    )


def answer(user, project, document, *names: str) -> None:  # type: ignore[no-untyped-def]
    hand_out(user, document)  # annotation_submit takes only documents handed to the user
    services.annotation_submit(
        user=user,
        project=project,
        document_id=document.pk,
        label_ids=[label_id(project, name) for name in names],
    )


@pytest.fixture
def labelled(project, lead, annotator):  # type: ignore[no-untyped-def]
    """Overlap 2: document 0 agreed on (final), document 1 split (not final), document 2
    untouched. The annotator answered under guidelines v1, the lead under v2."""
    project.overlap = 2
    project.save()
    docs = add_documents(
        project, ["Shares rally", "Cup final, in extra time", "New chip"], external_id="x"
    )
    Document.objects.filter(pk=docs[0].pk).update(meta={"source": "wire"})
    answer(annotator, project, docs[0], "business")
    answer(annotator, project, docs[1], "sport")
    services.guideline_update(project=project, text="v2: sport beats business", user=lead)
    answer(lead, project, docs[0], "business")
    answer(lead, project, docs[1], "business")
    Document.objects.filter(pk=docs[0].pk).update(split=Document.Split.HOLDOUT)
    return docs


def jsonl_rows(project, **options) -> list[dict]:  # type: ignore[no-untyped-def]
    return [json.loads(line) for line in exporters.export_jsonl(project, **options)]


def test_jsonl_export_has_final_label_each_annotator_and_guideline_version(project, labelled):
    [row] = jsonl_rows(project)
    assert row == {
        "id": labelled[0].pk,
        "external_id": "x",
        "text": "Shares rally",
        "label": "business",
        "split": "holdout",
        "guideline_versions": [1, 2],
        "imported": False,
        "imported_from": None,
        "meta": {"source": "wire"},
        "annotators": {"annotator": "business", "lead": "business"},
        "annotator_guideline_versions": {"annotator": 1, "lead": 2},
    }


def test_export_all_documents_on_request(project, labelled):
    rows = jsonl_rows(project, labelled_only=False)
    assert [r["text"] for r in rows] == ["Shares rally", "Cup final, in extra time", "New chip"]
    split = rows[1]
    assert split["label"] is None
    assert split["annotators"] == {"annotator": "sport", "lead": "business"}
    assert rows[2]["annotators"] == {} and rows[2]["guideline_versions"] == []


def test_export_without_annotators_names_nobody(project, labelled):
    for line in exporters.export_jsonl(project, labelled_only=False, include_annotators=False):
        assert "annotator" not in line and '"lead"' not in line
    text = "".join(exporters.export_csv(project, labelled_only=False, include_annotators=False))
    assert "annotator" not in text and "lead" not in text


def test_csv_export_has_a_column_pair_per_annotator(project, labelled):
    text = "".join(exporters.export_csv(project, labelled_only=False))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == [
        "id", "external_id", "text", "label", "split", "guideline_versions", "imported_from",
        "meta", "annotator:annotator", "guideline_version:annotator",
        "annotator:lead", "guideline_version:lead",
    ]
    first, second, third = rows
    assert (first["label"], first["split"], first["guideline_versions"]) == (
        "business", "holdout", "1|2"
    )
    assert json.loads(first["meta"]) == {"source": "wire"}
    assert (first["annotator:annotator"], first["guideline_version:annotator"]) == ("business", "1")
    assert (first["annotator:lead"], first["guideline_version:lead"]) == ("business", "2")
    assert second["text"] == "Cup final, in extra time"
    assert (second["label"], second["annotator:annotator"]) == ("", "sport")
    assert third["annotator:lead"] == ""


def test_multi_label_exports_join_names(lead, tmp_path):
    project = services.project_create(
        name="Tags", created_by=lead, task_type=Project.TaskType.MULTI_LABEL,
        labels=["business", "sport", "tech"],
    )
    [doc] = add_documents(project, ["Chip maker buys club"])
    answer(lead, project, doc, "tech", "business")
    [row] = jsonl_rows(project)
    assert row["label"] == ["business", "tech"]
    assert row["annotators"] == {"lead": ["business", "tech"]}
    text = "".join(exporters.export_csv(project))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[0]["label"] == "business|tech"
    out = exporters.export_hf_dataset(project, tmp_path / "hf")
    train = datasets.load_from_disk(str(out))["train"]
    assert train.features["labels"].feature.int2str(train[0]["labels"]) == ["business", "tech"]
    assert "label" not in train.column_names


def test_imported_labels_are_marked_and_exports_read_back(project, lead, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps({"text": "Goal!", "label": "sport", "id": "g1", "lang": "en"}) + "\n"
        + json.dumps({"text": "Unlabelled"}) + "\n"
    )
    with source.open("rb") as file:
        documents_import(project=project, file=file, fmt=None, user=lead, name="in.jsonl")
    [row] = jsonl_rows(project)
    assert row["imported"] is True and row["imported_from"] == "in.jsonl"
    # The label is the file's: the lead who uploaded it is nobody's annotator here.
    assert row["annotators"] == {} and row["annotator_guideline_versions"] == {}
    [csv_row] = csv.DictReader(io.StringIO("".join(exporters.export_csv(project))))
    assert csv_row["imported_from"] == "in.jsonl" and "annotator:lead" not in csv_row
    assert (row["external_id"], row["meta"]) == ("g1", {"lang": "en"})
    # An export is an import file for another project: texts and final labels survive.
    for fmt, lines in [("jsonl", exporters.export_jsonl), ("csv", exporters.export_csv)]:
        other = services.project_create(name=f"Copy {fmt}", created_by=lead, labels=["sport"])
        path = tmp_path / f"out.{fmt}"
        path.write_text("".join(lines(project, labelled_only=False)), encoding="utf-8")
        with path.open("rb") as file:
            report = documents_import(project=other, file=file, fmt=None, user=lead, name=path.name)
        assert (report.created, report.labelled) == (2, 1)
        copied = Document.objects.get(project=other, text="Goal!")
        assert copied.final_labels == [label_id(other, "sport")]
        assert copied.external_id == "g1"


# Cells a spreadsheet would run as a formula (OWASP's list: = + - @, tab, carriage return).
FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+1", "-2+3", "@SUM(1)",
            "\ttab first", "\rreturn first"]


@pytest.fixture
def formulas(lead):  # type: ignore[no-untyped-def]
    """A project whose texts, external ids and label names start like formulas."""
    project = services.project_create(name="Formulas", created_by=lead, labels=["=evil", "ok"])
    docs = Document.objects.bulk_create(
        Document(project=project, text=text, text_hash=text_hash(text), rand=i / 100,
                 external_id=f"=id{i}" if i % 2 else "-1")
        for i, text in enumerate([*FORMULAS, "'=already quoted", "plain"])
    )
    for doc in docs:
        answer(lead, project, doc, "=evil")
    return project


def csv_cells(lines) -> list[list[str]]:  # type: ignore[no-untyped-def]
    return list(csv.reader(io.StringIO("".join(lines), newline="")))


def test_csv_export_neutralises_cells_that_start_like_formulas(formulas):
    header, *rows = csv_cells(exporters.export_csv(formulas))
    assert header[:4] == ["id", "external_id", "text", "label"]
    for row in rows:
        for cell in row:
            assert not cell or cell[0] not in "=+-@\t\r", row
    assert [row[2] for row in rows] == [
        *("'" + text for text in FORMULAS), "''=already quoted", "plain"
    ]
    assert {row[1] for row in rows} == {"'-1", *(f"'=id{i}" for i in range(1, 8, 2))}
    assert {row[3] for row in rows} == {"'=evil"}
    assert {row[header.index("annotator:lead")] for row in rows} == {"'=evil"}


def test_csv_export_raw_leaves_cells_as_they_are(formulas):
    _header, *rows = csv_cells(exporters.export_csv(formulas, raw=True))
    assert [row[2] for row in rows] == [*FORMULAS, "'=already quoted", "plain"]
    assert {row[3] for row in rows} == {"=evil"}


def test_csv_export_has_a_byte_order_mark_only_when_asked(project, labelled):
    plain = "".join(exporters.export_csv(project))
    assert plain.startswith("id,")
    assert next(csv.DictReader(io.StringIO(plain)))["text"] == "Shares rally"
    marked = "".join(exporters.export_csv(project, bom=True))
    assert marked == "\ufeff" + plain


def test_neutralised_csv_imports_back_to_the_original_texts_and_labels(formulas, lead, tmp_path):
    path = tmp_path / "out.csv"
    path.write_text("".join(exporters.export_csv(formulas)), encoding="utf-8", newline="")
    other = services.project_create(name="Copy", created_by=lead, labels=["=evil"])
    with path.open("rb") as file:
        report = documents_import(project=other, file=file, fmt=None, user=lead, name=path.name)
    assert (report.created, report.labelled) == (8, 8)
    original = {d.text: d.external_id for d in Document.objects.filter(project=formulas)}
    copied = {d.text: d.external_id for d in Document.objects.filter(project=other)}
    assert copied == original
    assert {tuple(d.final_labels) for d in Document.objects.filter(project=other)} == {
        (label_id(other, "=evil"),)
    }


def test_export_queries_do_not_grow_with_documents(project, annotator):
    def queries_for(n: int) -> int:
        Document.objects.filter(project=project).delete()
        docs = add_documents(project, [f"document {i}" for i in range(n)])
        for doc in docs:
            answer(annotator, project, doc, "tech")
        with CaptureQueriesContext(connection) as captured:
            rows = list(exporters.export_rows(project, chunk_size=10))
        assert len(rows) == n and all(r.answers for r in rows)
        return len(captured)

    # Four chunks of ten either way: the count follows chunks, not documents or annotations.
    assert queries_for(31) == queries_for(40)
    assert queries_for(40) < 15


def test_hf_dataset_is_a_dataset_dict_with_class_labels_and_meta_columns(
    project, labelled, tmp_path
):
    out = exporters.export_hf_dataset(project, tmp_path / "hf", include_annotators=True)
    loaded = datasets.load_from_disk(str(out))
    assert isinstance(loaded, datasets.DatasetDict)
    assert set(loaded) == {"train", "holdout"}
    # Only document 0 is final, and it is in the holdout; the train split is empty but typed.
    assert (loaded["train"].num_rows, loaded["holdout"].num_rows) == (0, 1)
    holdout = loaded["holdout"]
    assert isinstance(holdout.features["label"], datasets.ClassLabel)
    assert holdout.features["label"].names == ["business", "sport", "tech"]
    assert loaded["train"].features == holdout.features
    assert "split" not in holdout.column_names and "meta" not in holdout.column_names
    row = holdout[0]
    assert holdout.features["label"].int2str(row["label"]) == "business"
    assert (row["text"], row["guideline_versions"], row["source"]) == ("Shares rally", [1, 2],
                                                                       "wire")
    assert {a["annotator"]: (a["labels"], a["guideline_version"]) for a in row["annotations"]} == {
        "annotator": (["business"], 1),
        "lead": (["business"], 2),
    }


def test_hf_dataset_puts_pool_documents_in_train(project, labelled, tmp_path):
    Document.objects.filter(project=project).update(split=Document.Split.POOL)
    loaded = datasets.load_from_disk(str(exporters.export_hf_dataset(project, tmp_path / "hf")))
    assert (loaded["train"]["text"], loaded["holdout"].num_rows) == (["Shares rally"], 0)


def test_hf_meta_columns_are_typed_and_never_shadow_the_fixed_ones(project, lead, tmp_path):
    docs = add_documents(project, ["One", "Two", "Three"])
    metas = [
        {"year": 2020, "score": 1, "ok": True, "text": "shadow", "tags": ["a"], "mixed": "x"},
        {"year": 2021, "score": 0.5, "ok": False, "mixed": 3},
        {},
    ]
    for doc, meta in zip(docs, metas, strict=True):
        Document.objects.filter(pk=doc.pk).update(meta=meta)
        answer(lead, project, doc, "tech")
    loaded = datasets.load_from_disk(str(exporters.export_hf_dataset(project, tmp_path / "hf")))
    train = loaded["train"]
    dtypes = {name: getattr(train.features[name], "dtype", None) for name in train.features}
    assert (dtypes["year"], dtypes["score"], dtypes["ok"]) == ("int64", "float64", "bool")
    assert (dtypes["meta_text"], dtypes["tags"], dtypes["mixed"]) == ("string",) * 3
    assert train["text"] == ["One", "Two", "Three"]
    assert train["meta_text"] == ["shadow", None, None]
    assert train["year"] == [2020, 2021, None] and train["score"] == [1.0, 0.5, None]
    assert train["ok"] == [True, False, None]
    # Nested values and values of mixed types are kept as their JSON text.
    assert train["tags"] == ['["a"]', None, None] and train["mixed"] == ["x", "3", None]


def test_hf_multi_label_column_is_a_list_of_class_labels(lead, tmp_path):
    project = services.project_create(
        name="Tags", created_by=lead, task_type=Project.TaskType.MULTI_LABEL,
        labels=["business", "sport", "tech"],
    )
    [doc] = add_documents(project, ["Chip maker buys club"])
    answer(lead, project, doc, "tech", "business")
    train = datasets.load_from_disk(
        str(exporters.export_hf_dataset(project, tmp_path / "hf")))["train"]
    feature = train.features["labels"].feature
    assert isinstance(feature, datasets.ClassLabel)
    assert [feature.int2str(i) for i in train[0]["labels"]] == ["business", "tech"]


def test_hf_dataset_names_the_file_of_imported_labels(project, lead, tmp_path):
    source = tmp_path / "gold.jsonl"
    source.write_text(json.dumps({"text": "Goal!", "label": "sport"}) + "\n")
    with source.open("rb") as file:
        documents_import(project=project, file=file, fmt=None, user=lead, name="gold.jsonl")
    out = exporters.export_hf_dataset(project, tmp_path / "hf", include_annotators=True)
    row = datasets.load_from_disk(str(out))["train"][0]
    assert row["imported_from"] == "gold.jsonl"
    assert row["annotations"] == [{"annotator": None, "labels": ["sport"],
                                   "guideline_version": 1, "source": "import",
                                   "imported_from": "gold.jsonl"}]


def test_hf_dataset_of_all_documents_marks_unlabelled_rows(project, labelled, tmp_path):
    out = exporters.export_hf_dataset(project, tmp_path / "hf", labelled_only=False)
    loaded = datasets.load_from_disk(str(out))
    assert loaded["holdout"]["label"] == [0] and loaded["train"]["label"] == [-1, -1]
    assert "annotations" not in loaded["train"].column_names


def test_hf_dataset_of_a_project_without_labels_is_empty_but_typed(project, documents, tmp_path):
    out = exporters.export_hf_dataset(project, tmp_path / "hf")
    loaded = datasets.load_from_disk(str(out))
    assert loaded["train"].num_rows == loaded["holdout"].num_rows == 0
    assert loaded["train"].features["label"].names == ["business", "sport", "tech"]


def test_hf_zip_holds_a_loadable_dataset(project, labelled, tmp_path):
    archive = exporters.export_hf_zip(project)
    try:
        assert archive.suffix == ".zip"
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(tmp_path)
        folder = tmp_path / archive.stem
        assert datasets.load_from_disk(str(folder))["holdout"]["text"] == ["Shares rally"]
    finally:
        import shutil

        shutil.rmtree(archive.parent)


def test_export_command_writes_each_format(project, labelled, tmp_path, capsys):
    out = tmp_path / "labels.jsonl"
    call_command("export_labels", "News topics", "--format", "jsonl", "--out", str(out))
    assert [json.loads(line)["label"] for line in out.read_text().splitlines()] == ["business"]
    csv_out = tmp_path / "labels.csv"
    call_command("export_labels", str(project.pk), "--format", "csv", "--out", str(csv_out),
                 "--all", "--no-annotators")
    rows = list(csv.DictReader(io.StringIO(csv_out.read_text(encoding="utf-8"))))
    assert len(rows) == 3 and "annotator:lead" not in rows[0]
    call_command("export_labels", str(project.pk), "--format", "hf", "--out",
                 str(tmp_path / "hf"))
    assert datasets.load_from_disk(str(tmp_path / "hf"))["holdout"]["text"] == ["Shares rally"]
    assert "Wrote 1 documents" in capsys.readouterr().out


def test_export_command_csv_options_for_raw_cells_and_a_byte_order_mark(formulas, tmp_path):
    out = tmp_path / "labels.csv"
    call_command("export_labels", "Formulas", "--format", "csv", "--out", str(out))
    data = out.read_bytes()
    assert data.startswith(b"id,") and b"'=HYPERLINK" in data
    call_command("export_labels", "Formulas", "--format", "csv", "--out", str(out),
                 "--csv-raw", "--csv-bom")
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbfid,") and b"'=HYPERLINK" not in data
    assert b"=HYPERLINK" in data


def test_export_command_refuses_csv_options_for_other_formats(formulas, tmp_path):
    with pytest.raises(CommandError, match="--csv-raw and --csv-bom"):
        call_command("export_labels", "Formulas", "--format", "jsonl", "--out",
                     str(tmp_path / "x.jsonl"), "--csv-raw")


def test_export_file_names_and_types():
    project = Project(pk=7)
    assert exporters.export_filename(project, "csv") == "labelwise-project-7.csv"
    assert exporters.export_filename(project, "hf") == "labelwise-project-7-hf.zip"
    assert Path(exporters.export_filename(project, "jsonl")).suffix == ".jsonl"
