"""`manage.py export_worker`: builds queued model exports, one at a time."""

from __future__ import annotations

import socket
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from learner.export import export_jobs_run_once


class Command(BaseCommand):
    help = "Runs queued model-export jobs (HF zip, ONNX, int8 ONNX) until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Run at most one job, exit.")
        parser.add_argument("--poll", type=float, default=2.0, help="Seconds between polls.")

    def handle(self, *args: Any, once: bool = False, poll: float = 2.0, **options: Any) -> None:
        name = f"{socket.gethostname()}:export-worker"
        if once:
            export_jobs_run_once(worker=name)
            return
        self.stdout.write(f"export worker {name} waiting for jobs")
        while True:
            if not export_jobs_run_once(worker=name):
                time.sleep(poll)
