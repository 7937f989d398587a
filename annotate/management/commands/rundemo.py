"""`python manage.py rundemo`: the web app, the learner and the export worker together (what
`make demo` runs), optionally with simulated annotators labelling the demo project from its
gold labels."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from annotate.management.commands.demo_setup import DEMO_PROJECT

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


class Command(BaseCommand):
    help = "Run the web app, the learner worker and (optionally) simulated annotators."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--simulate", type=int, default=2, metavar="N",
                            help="Simulated annotators labelling the demo project (0 = none).")
        parser.add_argument("--pace", type=float, default=2.0,
                            help="Seconds a simulated annotator spends on a short document.")

    def handle(self, *args: object, **options: object) -> None:
        commands = {
            "web": [sys.executable, MANAGE, "runserver", str(options["addr"]), "--noreload"],
            "learner": [sys.executable, MANAGE, "learner"],
            # Model exports get their own process: a demo queues a round every few dozen
            # labels, and an export waiting for the learner to be idle waited for ever.
            "exports": [sys.executable, MANAGE, "export_worker"],
        }
        if int(options["simulate"]) > 0:
            commands["annotators"] = [
                sys.executable, MANAGE, "simulate_annotators", DEMO_PROJECT,
                "--annotators", str(options["simulate"]), "--pace", str(options["pace"]),
            ]
        processes = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(
            f"Labelwise: http://{options['addr']}/  ({', '.join(processes)} running; "
            "Ctrl-C stops everything)"
        ))
        stopping = False

        def stop(*_: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            while not stopping:
                for name, process in processes.items():
                    # The simulated annotators end when the queue is empty; the web app
                    # and the learner must not end while the demo runs.
                    if process.poll() is not None and name != "annotators":
                        self.stderr.write(f"{name} exited with {process.returncode}; stopping")
                        stopping = True
                time.sleep(0.5)
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            for process in processes.values():
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
