"""`python manage.py learner`: the long-running training worker."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand

from config.console import console_configure, verbose_requested
from learner.worker import Worker


class Command(BaseCommand):
    help = "Run the learner worker: claim queued training rounds and run them."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--once", action="store_true",
                            help="Run at most one round, then exit.")
        parser.add_argument("--poll", type=float, default=2.0,
                            help="Seconds between looks at the queue when idle.")
        parser.add_argument("--heartbeat-timeout", type=float, default=120.0,
                            help="Seconds without a heartbeat before a round is presumed lost.")
        parser.add_argument("--verbose", action="store_true",
                            help="Show transformers' load reports, warnings and progress bars "
                                 "(also LABELWISE_VERBOSE=1); quiet by default.")

    def handle(self, *args: object, **options: object) -> None:
        console_configure(verbose=verbose_requested(bool(options["verbose"])))
        if settings.LABELWISE_LEARNER_NICE and hasattr(os, "nice"):
            # Before any thread or Ray worker starts: they inherit it.
            os.nice(min(19, settings.LABELWISE_LEARNER_NICE))
        worker = Worker(heartbeat_timeout=timedelta(seconds=float(options["heartbeat_timeout"])))
        if options["once"]:
            ran = worker.run_once()
            self.stdout.write("ran a round" if ran else "nothing queued")
            return
        stop = threading.Event()
        # SIGTERM (docker stop) and Ctrl-C stop the loop after the current round; if the
        # process is killed meanwhile, the heartbeat timeout requeues that round.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        worker.run_forever(poll_seconds=float(options["poll"]), stop=stop)
