"""manage.py export_labels PROJECT --format jsonl|csv|hf --out PATH [--csv-raw] [--csv-bom]."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotate.io.exporters import export_csv, export_hf_dataset, export_jsonl
from annotate.management.commands._lookup import project_from


class Command(BaseCommand):
    help = (
        "Export a project's documents with their final labels (and each annotator's) as "
        "JSON Lines, CSV or a Hugging Face dataset folder."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("--format", choices=["jsonl", "csv", "hf"], default="jsonl")
        parser.add_argument(
            "--out", required=True, help="a file (jsonl, csv; '-' for stdout) or a folder (hf)"
        )
        parser.add_argument(
            "--all", action="store_true", help="every document, not only the labelled ones"
        )
        parser.add_argument(
            "--no-annotators", action="store_true", help="leave out who labelled what"
        )
        parser.add_argument(
            "--csv-raw",
            action="store_true",
            help="CSV: write cells as they are; by default a cell that a spreadsheet would "
            "run as a formula (starting with = + - @, a tab or a carriage return) gets a "
            "leading single quote",
        )
        parser.add_argument(
            "--csv-bom",
            action="store_true",
            help="CSV: start with a UTF-8 byte-order mark, for Excel versions that need one",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_from(options["project"])
        labelled_only = not options["all"]
        include_annotators = not options["no_annotators"]
        fmt, out = options["format"], options["out"]
        if fmt != "csv" and (options["csv_raw"] or options["csv_bom"]):
            raise CommandError("--csv-raw and --csv-bom apply to --format csv only.")
        if fmt == "hf":
            if out == "-":
                raise CommandError("A Hugging Face dataset is a folder; give --out FOLDER.")
            folder = export_hf_dataset(
                project, out, labelled_only=labelled_only, include_annotators=include_annotators
            )
            self.stdout.write(f"Wrote {folder}")
            return
        if fmt == "jsonl":
            lines = export_jsonl(
                project, labelled_only=labelled_only, include_annotators=include_annotators
            )
        else:
            lines = export_csv(
                project,
                labelled_only=labelled_only,
                include_annotators=include_annotators,
                raw=options["csv_raw"],
                bom=options["csv_bom"],
            )
        if out == "-":
            for line in lines:
                self.stdout.write(line, ending="")
            return
        path = Path(out)
        # newline="" keeps the csv module's \r\n line ends as they are.
        with path.open("w", encoding="utf-8", newline="") as file:
            count = -1 if fmt == "csv" else 0  # the CSV header is not a document
            for line in lines:
                file.write(line)
                count += 1
        self.stdout.write(f"Wrote {count} documents to {path}")
