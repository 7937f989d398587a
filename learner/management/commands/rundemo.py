"""`python manage.py rundemo`: the web app (under gunicorn, as in production), the learner and
the export worker together (what `make demo` runs), optionally with simulated annotators
labelling the demo project from its gold labels. Quiet by default; `--verbose` logs every
request and lets transformers print its load reports and progress bars."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from config.console import VERBOSE_ENV, verbose_requested
from learner.management.commands.demo_setup import DEMO_PROJECT

MANAGE = str(Path(settings.BASE_DIR) / "manage.py")


def bind_address(addr: str) -> str:
    """HOST:PORT for gunicorn from what runserver accepted too: a bare port is localhost's."""
    return addr if ":" in addr else f"127.0.0.1:{addr}"


def web_command(addr: str, *, verbose: bool = False) -> list[str]:
    """The web app under gunicorn, as docker/Dockerfile runs it, not Django's development
    server. Static files come from WhiteNoise (straight from static/, no collectstatic).
    Quiet unless `verbose`: no access log (the dashboard polls every two seconds), and
    gunicorn's own lines from warnings up."""
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi:application",
        "--chdir", str(settings.BASE_DIR),
        "--bind", bind_address(addr),
        # Two processes of four threads: a slow request (a predictions call, an import)
        # does not hold up the annotators' pages on a two-core machine.
        "--workers", os.environ.get("WEB_CONCURRENCY", "2"),
        "--threads", "4",
        "--timeout", "60",
        # Ctrl-C ends the demo in seconds, not gunicorn's default 30.
        "--graceful-timeout", "5",
        "--log-level", "info" if verbose else "warning",
    ]
    if verbose:
        command += ["--access-logfile", "-"]
    return command


class Command(BaseCommand):
    help = "Run the web app, the learner worker and (optionally) simulated annotators."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--addr", default="127.0.0.1:8000")
        parser.add_argument("--simulate", type=int, default=2, metavar="N",
                            help="Simulated annotators labelling the demo project (0 = none).")
        parser.add_argument("--pace", type=float, default=2.0,
                            help="Seconds a simulated annotator spends on a short document.")
        parser.add_argument("--verbose", action="store_true",
                            help="Log every request and show transformers' load reports and "
                                 "progress bars (also LABELWISE_VERBOSE=1).")

    def handle(self, *args: object, **options: object) -> None:
        verbose = verbose_requested(bool(options["verbose"]))
        env = dict(os.environ)
        if verbose:
            # The export worker and the annotators read it; the learner gets the flag too.
            env[VERBOSE_ENV] = "1"
        commands = {
            "web": web_command(str(options["addr"]), verbose=verbose),
            "learner": [sys.executable, MANAGE, "learner", *(["--verbose"] if verbose else [])],
            # Model exports get their own process: a demo queues a round every few dozen
            # labels, and an export waiting for the learner to be idle waited for ever.
            "exports": [sys.executable, MANAGE, "export_worker"],
        }
        if int(options["simulate"]) > 0:
            commands["annotators"] = [
                sys.executable, MANAGE, "simulate_annotators", DEMO_PROJECT,
                "--annotators", str(options["simulate"]), "--pace", str(options["pace"]),
            ]
        processes = {name: subprocess.Popen(cmd, env=env) for name, cmd in commands.items()}
        url = f"http://{bind_address(str(options['addr']))}/"
        self.stdout.write(self.style.SUCCESS(
            f"Labelwise: {url}  ({', '.join(processes)} running; "
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
