"""``python manage.py simulate``: replay a labeled JSONL file through the learning loop.

A thin wrapper: the options are defined once, in ``learner.ml.simulate.add_arguments``,
and the work is ``learner.ml.simulate.run`` (also the ``labelwise-simulate`` script).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from learner.ml import simulate


class Command(BaseCommand):
    help = (
        "Replay a fully labeled JSON Lines file through the active-learning loop and "
        "write learning curves (CSV, JSON, PNG/SVG) comparing query strategies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        simulate.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        # Hand over only the simulation's own options, not Django's (--verbosity, ...).
        ours = {a.dest for a in simulate.build_parser()._actions if a.dest != "help"}
        simulate.run(argparse.Namespace(**{k: v for k, v in options.items() if k in ours}))
