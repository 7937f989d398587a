"""Shared set-up for benchmarks that run Django: a throwaway data folder and database."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = os.environ.get("LABELWISE_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def fresh_postgres(name: str) -> str:
    """Drops and re-creates database `name` on the benchmark's PostgreSQL server."""
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_SERVER}/{name}"


def setup_django(database: str = "sqlite", *, name: str = "labelwise_bench") -> None:
    """Configures Django on a new temp data folder and a new, migrated database: SQLite in
    that folder, or (database="postgres") a fresh PostgreSQL database called `name`."""
    sys.path.insert(0, str(REPO))
    os.environ["LABELWISE_DATA_DIR"] = tempfile.mkdtemp(prefix="labelwise-bench-")
    os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
    os.environ["ALLOWED_HOSTS"] = "testserver"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if database == "postgres":
        os.environ["DATABASE_URL"] = fresh_postgres(name)
    else:
        os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
