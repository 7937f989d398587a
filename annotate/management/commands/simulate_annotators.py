"""`python manage.py simulate_annotators PROJECT`: label from a gold field at a human pace.

For demos and load checks: each simulated annotator asks the real queue for its next
document, answers with the document's gold label (a metadata field) and waits a
human-like time, so the learner's rounds and the dashboard fill in as they would with
people at the keyboard.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import connection

from annotate import services
from annotate.management.commands._lookup import project_from
from annotate.models import Membership, Project


def label_like_a_human(
    *, project: Project, username: str, gold_field: str, pace: float, limit: int,
    error_rate: float, stop: threading.Event, log: Callable[[str], object], seed: int,
) -> int:
    """One simulated annotator's loop; returns how many documents it labelled."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username)
    Membership.objects.get_or_create(project=project, user=user,
                                     defaults={"role": Membership.Role.ANNOTATOR})
    by_name = {label.name: label.pk for label in project.labels.all()}
    rng = random.Random(seed)
    done = 0
    try:
        while not stop.is_set() and (limit <= 0 or done < limit):
            document = services.assignment_next(user=user, project=project)
            if document is None:
                log(f"{username}: the queue is empty")
                break
            gold = document.meta.get(gold_field)
            names = gold if isinstance(gold, list) else [gold]
            if any(name not in by_name for name in names):
                services.assignment_skip(user=user, project=project, document_id=document.pk)
                continue
            if rng.random() < error_rate:  # people slip
                names = [rng.choice(list(by_name))]
            # Reading time grows with the text, around `pace` seconds for a short one.
            stop.wait(pace * rng.uniform(0.5, 1.5) * (1 + min(len(document.text), 3000) / 3000))
            services.annotation_submit(
                user=user, project=project, document_id=document.pk,
                label_ids=[by_name[name] for name in names],
            )
            done += 1
    finally:
        connection.close()
    return done


class Command(BaseCommand):
    help = "Simulate annotators who label from a gold metadata field at a human pace."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("project", help="Project id or exact name.")
        parser.add_argument("--gold-field", default="_gold")
        parser.add_argument("--annotators", type=int, default=2)
        parser.add_argument("--pace", type=float, default=3.0,
                            help="Seconds per short document (longer texts take longer).")
        parser.add_argument("--limit", type=int, default=0,
                            help="Labels per annotator (0 = until the queue is empty).")
        parser.add_argument("--error-rate", type=float, default=0.03)
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: object, **options: object) -> None:
        project = project_from(str(options["project"]))
        stop = threading.Event()
        results: dict[str, int] = {}

        def run(i: int) -> None:
            name = f"simulated-{i + 1}"
            results[name] = label_like_a_human(
                project=project, username=name, gold_field=str(options["gold_field"]),
                pace=float(options["pace"]), limit=int(options["limit"]),
                error_rate=float(options["error_rate"]), stop=stop,
                log=self.stdout.write, seed=int(options["seed"]) + i,
            )

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(int(options["annotators"]))]
        self.stdout.write(f"{len(threads)} simulated annotators labelling {project} "
                          f"(~{options['pace']} s per document; Ctrl-C stops)")
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                time.sleep(0.5)
        except KeyboardInterrupt:
            stop.set()
            for thread in threads:
                thread.join()
        self.stdout.write(f"labelled: {results}")
