"""Documents import: every format with and without labels, all-or-nothing errors naming
the line, duplicates, metadata, the management command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotate import selectors, services
from annotate.bulk import ANALYZE_AFTER_ROWS, table_analyze
from annotate.io import label_studio
from annotate.io.base import JSON_DECODER
from annotate.io.importer import DocumentImportError, ImportReport, detect_format, documents_import
from annotate.models import Annotation, Document, Project, text_hash


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def jsonl_text(*records: dict) -> str:
    return "".join(json.dumps(record) + "\n" for record in records)


def run_import(project, user, path: Path, fmt: str | None = None, **kwargs) -> ImportReport:  # type: ignore[no-untyped-def]
    with path.open("rb") as file:
        return documents_import(
            project=project, file=file, fmt=fmt, user=user, name=path.name, **kwargs
        )


def label_ids(project, *names: str) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted(project.labels.get(name=name).pk for name in names)


def final_names(project) -> dict[str, list[str] | None]:  # type: ignore[no-untyped-def]
    names = dict(project.labels.values_list("id", "name"))
    return {
        doc.text: sorted(names[i] for i in doc.final_labels) if doc.final_labels else None
        for doc in Document.objects.filter(project=project)
    }


@pytest.fixture
def multi_project(lead):  # type: ignore[no-untyped-def]
    return services.project_create(
        name="Tags",
        created_by=lead,
        task_type=Project.TaskType.MULTI_LABEL,
        labels=["business", "sport", "tech"],
    )


# --- CSV -----------------------------------------------------------------------------------


def test_csv_without_labels_keeps_other_columns_as_meta(project, lead, tmp_path):
    path = write(
        tmp_path,
        "news.csv",
        "id,text,source,date\n"
        "a1,Shares rally on strong earnings,wire,2024-01-02\n"
        'a2,"Cup final, in extra time",web,2024-01-03\n',
    )
    report = run_import(project, lead, path)
    assert (report.fmt, report.created, report.labelled, report.duplicates) == ("csv", 2, 0, 0)
    doc = Document.objects.get(project=project, external_id="a2")
    assert doc.text == "Cup final, in extra time"
    assert doc.meta == {"source": "web", "date": "2024-01-03"}
    assert doc.final_labels is None and doc.slots_taken == 0
    assert not Annotation.objects.exists()


def test_csv_labelled_rows_become_final_imported_annotations(project, lead, annotator, tmp_path):
    path = write(
        tmp_path,
        "news.csv",
        "text,label\nShares rally on strong earnings,business\nA new phone chip,\n",
    )
    report = run_import(project, lead, path)
    assert (report.created, report.labelled) == (2, 1)
    labelled = Document.objects.get(text="Shares rally on strong earnings")
    assert labelled.final_labels == label_ids(project, "business")
    assert (labelled.n_annotations, labelled.slots_taken) == (1, project.overlap)
    annotation = Annotation.objects.get(document=labelled)
    assert annotation.source == Annotation.Source.IMPORT
    # The label is the file's, not an answer of the lead who uploaded it.
    assert annotation.annotator is None
    assert (annotation.import_job.file_name, annotation.import_job.created_by) == (
        "news.csv", lead)
    assert annotation.author == "imported (news.csv)"
    assert not Annotation.objects.filter(annotator=lead).exists()
    [item] = selectors.review_items(project=project, document_ids=[labelled.pk])
    assert [a.annotator for a in item.answers] == ["imported (news.csv)"]
    assert annotation.labels == label_ids(project, "business")
    assert annotation.guideline_version == selectors.guideline_current(project)
    # The labelled document has left the queue; only the unlabelled one is handed out.
    handed = services.assignment_next(user=annotator, project=project)
    assert handed is not None and handed.text == "A new phone chip"
    assert services.assignment_next(user=annotator, project=project).pk == handed.pk


def test_csv_multi_label_cells_split_on_pipe_and_semicolon(multi_project, lead, tmp_path):
    path = write(
        tmp_path,
        "tags.csv",
        "text,label\nChip maker buys football club,tech|business\n"
        "Transfer fees soar,sport; business\nGadget review,tech\n",
    )
    report = run_import(multi_project, lead, path)
    assert report.labelled == 3
    assert final_names(multi_project) == {
        "Chip maker buys football club": ["business", "tech"],
        "Transfer fees soar": ["business", "sport"],
        "Gadget review": ["tech"],
    }


def test_csv_text_and_label_columns_can_be_named(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "body,topic,label\nMarkets slide,business,ignored\n")
    run_import(project, lead, path, text_field="body", label_field="topic")
    doc = Document.objects.get(project=project)
    assert doc.text == "Markets slide"
    assert doc.final_labels == label_ids(project, "business")
    assert doc.meta == {"label": "ignored"}


def test_csv_line_numbers_count_lines_of_quoted_multiline_cells(project, lead, tmp_path):
    path = write(
        tmp_path,
        "x.csv",
        'text,label\n"First line\nsecond line\nthird line",sport\nAnother,sprots\n',
    )
    with pytest.raises(DocumentImportError) as info:
        run_import(project, lead, path)
    assert info.value.line == 5
    assert Document.objects.count() == 0


@pytest.mark.parametrize("delimiter", ["\t", ";"])
def test_csv_separated_by_tabs_or_semicolons(delimiter, project, lead, tmp_path):
    rows = [["text", "label", "source"], ["Markets, again", "business", "wire"]]
    path = write(tmp_path, "x.tsv", "".join(delimiter.join(r) + "\n" for r in rows))
    run_import(project, lead, path)
    doc = Document.objects.get(project=project)
    assert (doc.text, doc.meta) == ("Markets, again", {"source": "wire"})
    assert doc.final_labels == label_ids(project, "business")


def test_django_uploads_import_with_detection_from_the_upload_name(project, lead):
    # What the upload page hands over: Django's UploadedFile, named after the user's file.
    tasks = [{"data": {"text": "Goal!"}, "annotations": [
        {"result": [{"type": "choices", "value": {"choices": ["sport"]}}]}]}]
    for upload in [
        SimpleUploadedFile("project-7-export.json", json.dumps(tasks).encode()),
        SimpleUploadedFile("more.csv", b"text,label\r\nNew chip,tech\r\n"),
    ]:
        documents_import(project=project, file=upload, fmt=None, user=lead, name=upload.name)
    assert final_names(project) == {"Goal!": ["sport"], "New chip": ["tech"]}


def test_csv_missing_text_column_is_reported_on_the_header(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "body,label\nMarkets slide,business\n")
    with pytest.raises(DocumentImportError, match=r"line 1: no 'text' column.*body, label"):
        run_import(project, lead, path)


def test_csv_row_with_wrong_number_of_fields_is_refused(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "text,label\nfine,sport\nnot, fine,sport\n")
    with pytest.raises(DocumentImportError, match="line 3: 3 fields where the header has 2"):
        run_import(project, lead, path)
    assert Document.objects.count() == 0


# --- JSON Lines ----------------------------------------------------------------------------


def test_jsonl_without_labels_keeps_other_fields_as_meta(project, lead, tmp_path):
    path = write(
        tmp_path,
        "docs.jsonl",
        jsonl_text(
            {"text": "Markets slide", "id": 7, "source": "wire", "tags": ["a", "b"]},
            {"text": "Cup final", "meta": {"source": "web", "score": 0.5}},
        ),
    )
    report = run_import(project, lead, path)
    assert (report.fmt, report.created, report.labelled) == ("jsonl", 2, 0)
    first = Document.objects.get(text="Markets slide")
    assert first.external_id == "7"
    assert first.meta == {"source": "wire", "tags": ["a", "b"]}
    assert Document.objects.get(text="Cup final").meta == {"source": "web", "score": 0.5}


def test_jsonl_labels_as_string_list_or_labels_key(multi_project, lead, tmp_path):
    path = write(
        tmp_path,
        "docs.jsonl",
        jsonl_text(
            {"text": "one", "label": "sport"},
            {"text": "two", "label": ["sport", "tech"]},
            {"text": "three", "labels": ["business"]},
            {"text": "four", "label": None},
            {"text": "five", "label": []},
        ),
    )
    report = run_import(multi_project, lead, path)
    assert (report.created, report.labelled) == (5, 3)
    assert final_names(multi_project) == {
        "one": ["sport"],
        "two": ["sport", "tech"],
        "three": ["business"],
        "four": None,
        "five": None,
    }


def test_label_names_match_case_insensitively(project, lead, tmp_path):
    path = write(tmp_path, "docs.jsonl", jsonl_text({"text": "Goal!", "label": "Sport"}))
    run_import(project, lead, path)
    assert final_names(project) == {"Goal!": ["sport"]}


# --- Label Studio --------------------------------------------------------------------------


def ls_task(text: str, *choices_per_annotation: tuple[list[str], bool], **data) -> dict:  # type: ignore[no-untyped-def]
    return {
        "id": abs(hash(text)) % 10_000,
        "data": {"text": text, **data},
        "annotations": [
            {
                "was_cancelled": cancelled,
                "result": [
                    {"type": "choices", "from_name": "topic", "to_name": "text",
                     "value": {"choices": choices}}
                ],
            }
            for choices, cancelled in choices_per_annotation
        ],
        "predictions": [{"result": [{"type": "choices", "value": {"choices": ["tech"]}}]}],
    }


def test_label_studio_takes_first_annotation_that_was_not_cancelled(project, lead, tmp_path):
    tasks = [
        ls_task("Markets slide", (["tech"], True), (["business"], False), (["sport"], False),
                source="wire"),
        ls_task("Cup final"),
    ]
    path = write(tmp_path, "export.json", json.dumps(tasks, indent=2))
    report = run_import(project, lead, path)
    assert (report.fmt, report.created, report.labelled) == ("labelstudio", 2, 1)
    # The prediction ("tech") is never taken for a label.
    assert final_names(project) == {"Markets slide": ["business"], "Cup final": None}
    doc = Document.objects.get(text="Markets slide")
    assert doc.meta == {"source": "wire"}
    assert doc.external_id == str(tasks[0]["id"])


def test_label_studio_plain_task_list_imports_unlabelled(project, lead, tmp_path):
    path = write(
        tmp_path,
        "tasks.json",
        json.dumps([{"data": {"text": "one", "url": "u1"}}, {"text": "two", "lang": "en"}]),
    )
    report = run_import(project, lead, path)
    assert (report.created, report.labelled) == (2, 0)
    assert Document.objects.get(text="one").meta == {"url": "u1"}
    assert Document.objects.get(text="two").meta == {"lang": "en"}


def test_label_studio_is_read_in_chunks_across_multibyte_characters(
    project, lead, tmp_path, monkeypatch
):
    # A 7-byte read size splits tasks, strings and multi-byte characters between reads.
    monkeypatch.setattr(label_studio, "CHUNK_BYTES", 7)
    tasks = [ls_task(f"Tâche numéro {i} — ünïcödé ✓", ([["business", "sport", "tech"][i % 3]],
                                                           False)) for i in range(30)]
    path = write(tmp_path, "export.json", json.dumps(tasks, ensure_ascii=False, indent=1))
    report = run_import(project, lead, path)
    assert (report.created, report.labelled) == (30, 30)
    assert final_names(project)["Tâche numéro 4 — ünïcödé ✓"] == ["sport"]


class CountingDecoder:
    """JSON_DECODER, counting its calls and the characters each call had in front of it."""

    def __init__(self) -> None:
        self.calls = 0
        self.scanned = 0

    def raw_decode(self, text: str, start: int = 0):  # type: ignore[no-untyped-def]
        self.calls += 1
        self.scanned += len(text) - start
        return JSON_DECODER.raw_decode(text, start)


def test_label_studio_reads_a_long_task_in_linear_time(tmp_path, monkeypatch):
    # A task spread over 256 reads used to be decoded again after each one: 256 decodes
    # scanning ~128 times the file. Now a decode waits until the buffer has doubled.
    monkeypatch.setattr(label_studio, "CHUNK_BYTES", 1024)
    decoder = CountingDecoder()
    monkeypatch.setattr(label_studio, "JSON_DECODER", decoder)
    text = "word " * (256 * 1024 // 5)
    content = json.dumps([ls_task(text, (["sport"], False)), ls_task("Short one")])
    with write(tmp_path, "long.json", content).open("rb") as file:
        tasks = [task for _number, _line, task in label_studio.tasks(file)]
    assert [t["data"]["text"] for t in tasks] == [text, "Short one"]
    assert decoder.calls <= 12  # log2(256) + the short task + slack
    assert decoder.scanned <= 4 * len(content)


def test_label_studio_refuses_a_task_past_the_size_limit(project, lead, tmp_path, monkeypatch):
    monkeypatch.setattr(label_studio, "CHUNK_BYTES", 1024)
    monkeypatch.setattr(label_studio, "MAX_TASK_BYTES", 10_000)
    path = write(tmp_path, "huge.json",
                 json.dumps([{"data": {"text": "Short"}}, {"data": {"text": "x" * 50_000}}]))
    with pytest.raises(DocumentImportError, match="^line 1: task 2 is longer than"):
        run_import(project, lead, path)
    assert Document.objects.count() == 0


# --- Prodigy -------------------------------------------------------------------------------


def test_prodigy_binary_accept_labels_and_reject_or_ignore_leave_unlabelled(
    project, lead, tmp_path
):
    hashes = {"_input_hash": 1, "_task_hash": 2, "_view_id": "classification"}
    path = write(
        tmp_path,
        "db-out.jsonl",
        jsonl_text(
            {"text": "accepted", "label": "sport", "answer": "accept", **hashes,
             "meta": {"source": "bbc"}},
            {"text": "rejected", "label": "sport", "answer": "reject", **hashes},
            {"text": "ignored", "label": "tech", "answer": "ignore", **hashes},
            {"text": "not asked yet", "label": "tech", "meta": {"source": "rss"}},
        ),
    )
    report = run_import(project, lead, path)
    assert (report.fmt, report.created, report.labelled) == ("prodigy", 4, 1)
    assert final_names(project) == {
        "accepted": ["sport"],
        "rejected": None,
        "ignored": None,
        "not asked yet": None,
    }
    # Prodigy's bookkeeping is dropped, its meta kept.
    assert Document.objects.get(text="accepted").meta == {"source": "bbc"}


def test_prodigy_choice_tasks_use_the_accept_list(multi_project, lead, tmp_path):
    options = [{"id": "sport", "text": "Sport"}, {"id": "tech", "text": "Tech"}]
    path = write(
        tmp_path,
        "choice.jsonl",
        jsonl_text(
            {"text": "both", "options": options, "accept": ["sport", "tech"], "answer": "accept",
             "_input_hash": 5},
            {"text": "rejected", "options": options, "accept": ["tech"], "answer": "reject",
             "_input_hash": 6},
        ),
    )
    run_import(multi_project, lead, path, fmt="prodigy")
    assert final_names(multi_project) == {"both": ["sport", "tech"], "rejected": None}


# --- format detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("news.csv", b"text,label\n", "csv"),
        ("news.tsv", b"text\tlabel\n", "csv"),
        ("export.json", b'  [\n  {"id": 1, "data": {"text": "x"}}', "labelstudio"),
        ("docs.jsonl", b'{"text": "x", "label": "y"}\n', "jsonl"),
        ("docs.json", b'{"text": "x"}\n{"text": "y"}\n', "jsonl"),
        ("db.jsonl", b'{"text": "x", "_input_hash": 1, "answer": "accept"}\n', "prodigy"),
        ("", b"\xef\xbb\xbftext,label\n", "csv"),
        ("upload", b"[]", "labelstudio"),
    ],
)
def test_detect_format(name, head, expected):
    assert detect_format(name, head) == expected


def test_detect_format_refuses_what_it_cannot_tell():
    with pytest.raises(DocumentImportError, match="cannot tell the format"):
        detect_format("sheet.xlsx", b"PK\x03\x04")


# --- all or nothing ------------------------------------------------------------------------

# Each case: a file whose *fourth* document (on the given line) is bad, after three good ones;
# a batch size of 2 makes sure earlier batches were already written when the error strikes.
GOOD = ["Markets slide", "Cup final", "New chip"]


def csv_file(bad_row: str) -> tuple[str, str]:
    return "docs.csv", "text,label\n" + "".join(f"{t},\n" for t in GOOD) + bad_row + "\n"


def jsonl_file(bad_line: str) -> tuple[str, str]:
    return "docs.jsonl", jsonl_text(*({"text": t} for t in GOOD)) + bad_line + "\n"


def prodigy_file(bad_line: str) -> tuple[str, str]:
    good = ({"text": t, "_input_hash": i, "answer": "ignore"} for i, t in enumerate(GOOD))
    return "db.jsonl", jsonl_text(*good) + bad_line + "\n"


def ls_file(bad_task: str) -> tuple[str, str]:
    # One task per line, so the fourth task sits on line 5 after the opening "[".
    good = "".join(json.dumps({"data": {"text": t}}) + ",\n" for t in GOOD)
    return "export.json", "[\n" + good + bad_task + "\n]\n"


ERROR_CASES = {
    "csv-unknown-label": (csv_file("Goal,sprots"), 5, "unknown label 'sprots'"),
    "csv-missing-text": (csv_file(",sport"), 5, "empty 'text'"),
    "csv-two-labels": (csv_file("Goal,sport|tech"), 5, "single-label project"),
    "jsonl-unknown-label": (jsonl_file('{"text": "Goal", "label": "sprots"}'), 4,
                            "unknown label 'sprots'"),
    "jsonl-missing-text": (jsonl_file('{"body": "Goal"}'), 4, "no 'text' field"),
    "jsonl-empty-text": (jsonl_file('{"text": "  "}'), 4, "empty 'text'"),
    "jsonl-text-not-string": (jsonl_file('{"text": 42}'), 4, "'text' must be a string"),
    "jsonl-label-wrong-type": (jsonl_file('{"text": "Goal", "label": {"a": 1}}'), 4,
                               "'label' must be a label name or a list"),
    "jsonl-bad-json": (jsonl_file('{"text": "Goal",}'), 4, "not valid JSON"),
    "jsonl-not-object": (jsonl_file('["Goal"]'), 4, "must be a JSON object"),
    "jsonl-two-labels": (jsonl_file('{"text": "Goal", "label": ["sport", "tech"]}'), 4,
                         "2 labels (sport, tech) but this is a single-label project"),
    "ls-unknown-label": (
        ls_file(json.dumps(ls_task("Goal", (["sprots"], False)))), 5, "unknown label 'sprots'"
    ),
    "ls-missing-text": (ls_file('{"data": {"body": "Goal"}}'), 5, "task 4: no 'text' field"),
    "ls-bad-json": (ls_file('{"data": {"text": "Goal"}'), 5, "not valid JSON"),
    "ls-two-labels": (
        ls_file(json.dumps(ls_task("Goal", (["sport", "tech"], False)))), 5,
        "single-label project",
    ),
    "prodigy-unknown-label": (prodigy_file('{"text": "Goal", "label": "sprots", '
                                           '"answer": "accept"}'), 4, "unknown label 'sprots'"),
    "prodigy-missing-text": (prodigy_file('{"answer": "accept", "label": "sport"}'), 4,
                             "no 'text' field"),
    "prodigy-bad-answer": (prodigy_file('{"text": "Goal", "answer": "maybe"}'), 4,
                           "'answer' must be one of"),
    "prodigy-bad-json": (prodigy_file('{"text": "Goal"'), 4, "not valid JSON"),
    "prodigy-two-labels": (prodigy_file('{"text": "Goal", "accept": ["sport", "tech"], '
                                        '"answer": "accept"}'), 4, "single-label project"),
    # Malformed values that used to escape as a traceback (a 500 on the upload page).
    "jsonl-deeply-nested": (jsonl_file("[" * 100_000), 4, "nested too deeply"),
    "jsonl-nested-meta": (jsonl_file('{"text": "Goal", "x": ' + "[" * 200 + "]" * 200 + "}"),
                          4, "nested too deeply"),
    "jsonl-huge-integer": (jsonl_file('{"text": "Goal", "n": ' + "9" * 5000 + "}"), 4,
                           "a number with more than 4300 digits"),
    "jsonl-nan": (jsonl_file('{"text": "Goal", "score": NaN}'), 4, "NaN is not a JSON number"),
    "jsonl-infinity": (jsonl_file('{"text": "Goal", "score": -Infinity}'), 4,
                       "-Infinity is not a JSON number"),
    "jsonl-overflowing-float": (jsonl_file('{"text": "Goal", "score": 1e999}'), 4,
                                "1e999 is too large"),
    "jsonl-nul-in-meta": (jsonl_file('{"text": "Goal", "note": "a\\u0000b"}'), 4,
                          "'note' contains a NUL character"),
    "jsonl-nul-in-meta-key": (jsonl_file('{"text": "Goal", "meta": {"a\\u0000": 1}}'), 4,
                              "contains a NUL character"),
    "jsonl-nul-in-id": (jsonl_file('{"text": "Goal", "id": "g\\u0000"}'), 4,
                        "the id contains a NUL character"),
    "jsonl-lone-surrogate": (jsonl_file('{"text": "Goal \\ud800"}'), 4,
                             "the text contains an unpaired surrogate"),
    "ls-deeply-nested": (ls_file("[" * 100_000), 5, "nested too deeply"),
    "ls-huge-integer": (ls_file('{"data": {"text": "Goal", "n": ' + "9" * 5000 + "}}"), 5,
                        "a number with more than 4300 digits"),
    "ls-nan": (ls_file('{"data": {"text": "Goal", "score": NaN}}'), 5, "NaN is not a JSON number"),
    "ls-value-not-object": (
        ls_file(json.dumps({"data": {"text": "Goal"}, "annotations": [
            {"result": [{"type": "choices", "value": "sport"}]}]})), 5,
        "task 4: a result's 'value' must be an object, not str",
    ),
    "ls-result-not-list": (
        ls_file(json.dumps({"data": {"text": "Goal"}, "annotations": [{"result": 5}]})), 5,
        "task 4: an annotation's 'result' must be a list, not int",
    ),
    "ls-nul-in-meta": (ls_file('{"data": {"text": "Goal", "note": "\\u0000"}}'), 5,
                       "'note' contains a NUL character"),
    "prodigy-answer-not-string": (prodigy_file('{"text": "Goal", "answer": ["accept"]}'), 4,
                                  "'answer' must be one of"),
    "prodigy-options-not-list": (prodigy_file('{"text": "Goal", "answer": "accept", '
                                              '"accept": [1], "options": 5}'), 4,
                                 "'options' must be a list"),
    "prodigy-accept-item-not-id": (prodigy_file('{"text": "Goal", "answer": "accept", '
                                                '"accept": [[1]]}'), 4,
                                   "'accept' must be a list of option ids"),
}


@pytest.mark.parametrize("case", ERROR_CASES, ids=list(ERROR_CASES))
def test_a_bad_row_rolls_back_the_whole_import_and_names_its_line(
    case, project, lead, documents, tmp_path
):
    (name, content), line, message = ERROR_CASES[case]
    before = Document.objects.count()
    path = write(tmp_path, name, content)
    with pytest.raises(DocumentImportError) as info:
        run_import(project, lead, path, batch_size=2)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}: ")
    assert message in str(info.value)
    assert Document.objects.count() == before
    assert not Annotation.objects.exists()


@pytest.mark.parametrize(
    "make", [csv_file, jsonl_file, prodigy_file, ls_file], ids=["csv", "jsonl", "prodigy", "ls"]
)
def test_bad_encoding_is_reported_on_its_line(make, project, lead, tmp_path):
    name, content = make('{"text": "Goal"}' if make is not csv_file else "Goal,")
    lines = content.encode("utf-8").split(b"\n")
    bad_at = next(i for i, line in enumerate(lines, start=1) if b"Cup final" in line)
    lines[bad_at - 1] = lines[bad_at - 1].replace(b"Cup", b"C\xff\xfe\xfa")
    path = write(tmp_path, name, b"\n".join(lines))
    with pytest.raises(DocumentImportError, match=f"^line {bad_at}: not valid UTF-8"):
        run_import(project, lead, path, batch_size=1)
    assert Document.objects.count() == 0


def test_unknown_label_message_lists_the_project_labels(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "text,label\nA,sport\nB,tech\nC,sprots\n")
    with pytest.raises(DocumentImportError) as info:
        run_import(project, lead, path)
    assert str(info.value) == (
        "line 4: unknown label 'sprots' (project labels: business, sport, tech)"
    )


def test_empty_file_is_an_error(project, lead, tmp_path):
    with pytest.raises(DocumentImportError, match="empty"):
        run_import(project, lead, write(tmp_path, "x.csv", b""))
    with pytest.raises(DocumentImportError, match="no documents"):
        run_import(project, lead, write(tmp_path, "x.jsonl", b"\n\n"))


@pytest.mark.parametrize(
    ("make", "line"), [(csv_file, 5), (jsonl_file, 4), (prodigy_file, 4), (ls_file, 5)],
    ids=["csv", "jsonl", "prodigy", "ls"],
)
def test_a_document_over_the_size_limit_is_refused_on_its_line(
    make, line, project, lead, tmp_path, settings
):
    settings.LABELWISE_MAX_DOCUMENT_CHARS = 40
    long_text = "x" * 41
    if make is csv_file:
        bad = f"{long_text},"
    elif make is ls_file:
        bad = json.dumps({"data": {"text": long_text}})
    else:
        bad = json.dumps({"text": long_text, "_input_hash": 9, "answer": "ignore"})
    path = write(tmp_path, *make(bad))
    with pytest.raises(DocumentImportError) as info:
        run_import(project, lead, path, batch_size=2)
    assert info.value.line == line
    assert "41 characters" in str(info.value) and "at most 40" in str(info.value)
    assert "LABELWISE_MAX_DOCUMENT_CHARS" in str(info.value)
    assert Document.objects.count() == 0
    # At the limit it imports.
    settings.LABELWISE_MAX_DOCUMENT_CHARS = 41
    assert run_import(project, lead, path).created == 4


def test_a_single_line_corpus_is_refused_by_default(project, lead, tmp_path, settings):
    assert settings.LABELWISE_MAX_DOCUMENT_CHARS == 100_000
    path = write(tmp_path, "corpus.jsonl", jsonl_text({"text": "word " * 20_001}))
    with pytest.raises(DocumentImportError, match="^line 1: 'text' is 100,005 characters"):
        run_import(project, lead, path)


# --- duplicates ----------------------------------------------------------------------------


def test_duplicates_within_the_file_and_in_the_project_are_skipped_and_reported(
    project, lead, documents, tmp_path
):
    existing = documents[0].text
    path = write(
        tmp_path,
        "docs.jsonl",
        jsonl_text(
            {"text": "Markets slide"},                     # line 1: new
            {"text": existing.upper(), "label": "tech"},   # line 2: already in the project
            {"text": "Cup final"},                         # line 3: new
            {"text": "  markets   SLIDE "},                # line 4: repeats line 1
            {"text": "New chip"},                          # line 5: new
            {"text": "cup final", "label": "sport"},      # line 6: repeats line 3 (next batch)
        ),
    )
    before = Document.objects.count()
    report = run_import(project, lead, path, batch_size=4)
    assert report.created == 3
    assert report.duplicates == 3
    assert (report.duplicates_existing, report.duplicates_in_file) == (1, 2)
    assert report.duplicate_lines == [2, 4, 6]
    assert report.duplicates_labelled == 2
    assert report.labelled == 0
    assert Document.objects.count() == before + 3
    # The document already there keeps its state: the duplicate's label is not applied.
    documents[0].refresh_from_db()
    assert documents[0].final_labels is None
    assert "skipped 3 exact duplicates" in report.summary()


def test_reimporting_the_same_file_creates_nothing(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "text\n" + "".join(f"doc {i}\n" for i in range(25)))
    assert run_import(project, lead, path, batch_size=10).created == 25
    again = run_import(project, lead, path, batch_size=10)
    assert (again.created, again.duplicates_existing) == (0, 25)
    assert len(again.duplicate_lines) == 10  # a sample, not every line
    assert Document.objects.filter(project=project).count() == 25


def test_same_text_may_live_in_two_projects(project, multi_project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "text\nShared text\n")
    run_import(project, lead, path)
    assert run_import(multi_project, lead, path).created == 1


def test_imported_rows_store_awkward_text_and_meta_exactly(project, lead, tmp_path):
    # Tabs, newlines, backslashes and "\\N" are what a bulk loader (COPY) must escape.
    texts = ["tab\there", "two\nlines", "back\\slash \\N", "quote ' \" and émoji 🙂"]
    meta = {"n": 3, "f": 0.5, "nested": {"list": [1, "a", None]}, "flag": True, "none": None}
    records = [{"text": t, **meta} for t in texts] + [{"text": "labelled", "label": "tech"}]
    path = write(tmp_path, "docs.jsonl", jsonl_text(*records))
    run_import(project, lead, path)
    stored = {doc.text: doc for doc in Document.objects.filter(project=project)}
    assert set(stored) == {*texts, "labelled"}
    for text in texts:
        assert stored[text].meta == meta
        assert stored[text].split == Document.Split.POOL
        assert stored[text].created_at is not None
    assert Document.objects.filter(project=project, final_labels__isnull=True).count() == 4
    assert Document.objects.get(project=project, final_labels__isnull=False).text == "labelled"


def test_nul_characters_are_refused_on_their_line_whatever_the_database(
    project, lead, tmp_path
):
    # PostgreSQL cannot store a NUL character (neither in jsonb nor in text) and SQLite
    # can: the import refuses it on both, so a file does not import on one and not the other.
    records = [{"text": f"doc {i}"} for i in range(5)] + [{"text": "x", "note": "a\u0000b"}]
    path = write(tmp_path, "docs.jsonl", jsonl_text(*records))
    with pytest.raises(DocumentImportError, match="^line 6: 'note' contains a NUL character"):
        run_import(project, lead, path, batch_size=4)
    assert Document.objects.count() == 0


def test_csv_nul_characters_in_id_or_meta_are_refused_on_their_line(project, lead, tmp_path):
    for row, message in [("a\x00,Goal,wire", "the id contains a NUL character"),
                         ("a1,Goal,wi\x00re", "'source' contains a NUL character")]:
        path = write(tmp_path, "x.csv", "id,text,source\nz,Fine,web\n" + row + "\n")
        with pytest.raises(DocumentImportError, match=f"^line 3: {message}"):
            run_import(project, lead, path)
        assert Document.objects.count() == 0


def test_imported_documents_get_random_queue_keys(project, lead, tmp_path):
    path = write(tmp_path, "x.csv", "text\n" + "".join(f"doc {i}\n" for i in range(50)))
    run_import(project, lead, path)
    rands = list(Document.objects.order_by("id").values_list("rand", flat=True))
    assert len(set(rands)) == 50 and all(0 <= r < 1 for r in rands)
    assert rands != sorted(rands)


def planner_rows(table: str) -> float:
    """The row count the database's query planner believes `table` holds."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
            return float(cursor.fetchone()[0])
        cursor.execute("SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'")
        if cursor.fetchone() is None:
            return -1.0
        cursor.execute("SELECT stat FROM sqlite_stat1 WHERE tbl = %s", [table])
        row = cursor.fetchone()
        return float(row[0].split()[0]) if row else -1.0


def test_a_large_import_refreshes_the_planner_statistics(project, lead, tmp_path):
    # Without them PostgreSQL plans the queue's and the refresh's joins for an empty table.
    before = planner_rows("annotate_document")
    n = ANALYZE_AFTER_ROWS
    run_import(project, lead, write(tmp_path, "many.csv",
                                    "text\n" + "".join(f"doc {i}\n" for i in range(n))))
    # (SQLite's capped sample gives an estimate.)
    assert before < 0.9 * n <= planner_rows("annotate_document")


def scans_of(plan: dict, table: str) -> list[tuple[str, str | None]]:
    """(node type, index name) of every node of an EXPLAIN (FORMAT JSON) plan that reads
    `table`."""
    found, stack = [], [plan]
    while stack:
        node = stack.pop()
        if node.get("Relation Name") == table:
            found.append((node["Node Type"], node.get("Index Name")))
        stack.extend(node.get("Plans", []))
    return found


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's query planner")
def test_duplicate_check_probes_the_unique_index_when_statistics_think_the_project_empty(
    project, multi_project, lead, tmp_path
):
    # The statistics know of another project's rows only: for this one they promise no rows
    # at all, so every index that starts with the project looks as good as the unique one.
    # Picking one of those scans all the project's rows per hash, and a second large import
    # slows quadratically as the project fills.
    Document.objects.bulk_create(
        Document(project=multi_project, text=f"other {i}", text_hash=text_hash(f"other {i}"),
                 rand=i / 3000)
        for i in range(3000)
    )
    table_analyze(Document)
    path = write(tmp_path, "docs.jsonl",
                 jsonl_text({"text": "one", "label": "sport"}, {"text": "two"}))
    with CaptureQueriesContext(connection) as captured:
        run_import(project, lead, path)
    checks = [q["sql"] for q in captured.captured_queries
              if q["sql"].lstrip().upper().startswith("SELECT") and "text_hash" in q["sql"]]
    # The duplicate check; the labels' annotations are copied by an INSERT ... SELECT.
    assert len(checks) == 1
    for sql in checks:
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + sql)
            explained = cursor.fetchone()[0]
        plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
        assert scans_of(plan, "annotate_document") == [("Index Scan", "document_unique_text")]


# --- the management command ----------------------------------------------------------------


def test_import_command_prints_the_report(project, lead, tmp_path, capsys):
    path = write(tmp_path, "docs.txt", jsonl_text({"text": "A", "label": "sport"}, {"text": "B"}))
    call_command("import_documents", str(project.pk), str(path), "--format", "jsonl")
    out = capsys.readouterr().out
    assert "Imported 2 documents (1 labelled)" in out
    # The first lead by default: the import is theirs, the label nobody's answer.
    assert Annotation.objects.get().import_job.created_by == lead


def test_import_command_finds_project_by_name_and_takes_a_user_and_fields(
    project, lead, annotator, tmp_path
):
    path = write(tmp_path, "docs.csv", "body,topic\nA,tech\n")
    call_command(
        "import_documents", "News topics", str(path), "--text-field", "body",
        "--label-field", "topic", "--user", "annotator",
    )
    assert Annotation.objects.get().import_job.created_by == annotator


def test_import_command_error_names_the_line_and_imports_nothing(project, lead, tmp_path):
    path = write(tmp_path, "docs.csv", "text,label\nA,sport\nB,sprots\n")
    with pytest.raises(CommandError, match=r"docs.csv: line 3: unknown label 'sprots'"):
        call_command("import_documents", str(project.pk), str(path))
    assert Document.objects.count() == 0


def test_import_command_unknown_project(db, tmp_path):
    path = write(tmp_path, "docs.csv", "text\nA\n")
    with pytest.raises(CommandError, match="No project"):
        call_command("import_documents", "nope", str(path))


@pytest.mark.django_db(transaction=True)
def test_migration_moves_old_imported_labels_off_their_uploader() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before, after = [("annotate", "0005_project_annotators_see_external_ids")], [
        ("annotate", "0006_imported_labels_name_their_file")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    user = old.get_model("auth", "User").objects.create(username="uploader")
    project = old.get_model("annotate", "Project").objects.create(name="P", created_by=user)
    job = old.get_model("annotate", "DocumentImport").objects.create(
        project=project, created_by=user, status="done")
    Doc, Ann = old.get_model("annotate", "Document"), old.get_model("annotate", "Annotation")
    from_file = Doc.objects.create(project=project, text="a", text_hash="a", rand=0.1,
                                   import_job=job)
    untraced = Doc.objects.create(project=project, text="b", text_hash="b", rand=0.2)
    for document in (from_file, untraced):
        Ann.objects.create(document=document, annotator=user, labels=[1], source="import")
    Ann.objects.create(document=untraced, annotator=old.get_model("auth", "User").objects.create(
        username="human"), labels=[1], source="human")

    executor = MigrationExecutor(connection)
    try:
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("annotate", "Annotation")
        rows = {(a.document_id, a.source): (a.annotator_id, a.import_job_id)
                for a in new.objects.all()}
    finally:
        # Back to the latest schema: later tests share this database.
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert rows[(from_file.pk, "import")] == (None, job.pk)
    # Without a known import, the uploader is the only trace left: kept.
    assert rows[(untraced.pk, "import")] == (user.pk, None)
    assert rows[(untraced.pk, "human")][0] is not None
