"""manage.py import_documents PROJECT FILE: a file of documents (and optional labels) into
a project, all or nothing."""

from __future__ import annotations

from argparse import ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from annotate.io.importer import FORMAT_CHOICES, DocumentImportError, documents_import
from annotate.management.commands._lookup import project_from, user_from


class Command(BaseCommand):
    help = (
        "Import documents from a CSV, JSON Lines, Label Studio or Prodigy file into a "
        "project. Any bad row stops the import and nothing is written."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("project", help="project id or exact name")
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--format",
            choices=[value for value, _ in FORMAT_CHOICES],
            help="the file's format (default: guessed from its name and first bytes)",
        )
        parser.add_argument("--text-field", default="text")
        parser.add_argument("--label-field", default="label")
        parser.add_argument(
            "--user", help="who imported labels are recorded as (default: the first lead)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = project_from(options["project"])
        user = user_from(project, options["user"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"No file {path}.")
        with path.open("rb") as file:
            try:
                report = documents_import(
                    project=project,
                    file=file,
                    fmt=options["format"],
                    user=user,
                    text_field=options["text_field"],
                    label_field=options["label_field"],
                    name=path.name,
                )
            except DocumentImportError as exc:
                raise CommandError(f"{path.name}: {exc} - nothing was imported.") from exc
        self.stdout.write(f"{project}: {report.summary()}")
