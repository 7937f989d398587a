"""`manage.py token_create USERNAME [--read-only] [--days N] [--name NAME]`: a new API key
for curl and scripts, printed alone on stdout (KEY=$(manage.py token_create alice))."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from api.authentication import MAX_DAYS, token_create


class Command(BaseCommand):
    help = "Creates an API key for a user and prints it (shown once; only a digest is stored)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--read-only", action="store_true",
                            help="the key may only read (GET); writes get 403")
        parser.add_argument("--days", type=int, default=None,
                            help=f"expire after this many days (1-{MAX_DAYS}; default: never)")
        parser.add_argument("--name", default="command line", help="what the key is for")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        user = User.objects.filter(username=options["username"], is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {options['username']!r}.")
        try:
            token, key = token_create(user=user, name=options["name"],
                                      read_only=options["read_only"], days=options["days"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        scope = "read-only" if token.read_only else "read and write"
        until = f"until {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else (
            "until revoked")
        self.stderr.write(f"API key {token.prefix}… for {user.get_username()}: {scope}, "
                          f"{until}.")
        self.stdout.write(key)
