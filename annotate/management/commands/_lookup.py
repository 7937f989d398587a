"""Argument lookups shared by the import and export commands (not a command itself: Django
skips command modules whose names start with an underscore)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import CommandError

from annotate.models import Membership, Project


def project_from(ref: str) -> Project:
    """A project by id, or else by its exact name (which must be unambiguous)."""
    if ref.isdigit():
        project = Project.objects.filter(pk=int(ref)).first()
        if project is not None:
            return project
    matches = list(Project.objects.filter(name=ref)[:2])
    if not matches:
        raise CommandError(f"No project with id or name {ref!r}.")
    if len(matches) > 1:
        raise CommandError(f"Several projects are named {ref!r}; give the project id.")
    return matches[0]


def user_from(project: Project, username: str | None) -> AbstractBaseUser:
    """The named user, or the project's first lead."""
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user
    lead = (
        Membership.objects.filter(project=project, role=Membership.Role.LEAD)
        .select_related("user")
        .order_by("created_at", "id")
        .first()
    )
    if lead is None:
        raise CommandError(f"Project {project} has no lead; pass --user.")
    return lead.user
