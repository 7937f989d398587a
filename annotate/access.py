"""Who may open a project page: every project view goes through `project_view`."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from annotate import selectors
from annotate.models import Membership, Project

# The role sets pages and the REST API admit, defined once.
LEAD = (Membership.Role.LEAD,)
ANNOTATORS = (Membership.Role.LEAD, Membership.Role.REVIEWER, Membership.Role.ANNOTATOR)
REVIEWERS = (Membership.Role.LEAD, Membership.Role.REVIEWER)
WATCHERS = (Membership.Role.LEAD, Membership.Role.REVIEWER, Membership.Role.VIEWER)
DOCUMENT_VIEWERS = (Membership.Role.LEAD, Membership.Role.VIEWER)
MEMBERS = tuple(Membership.Role.values)


class ProjectRequest(HttpRequest):
    """The request a `project_view` hands its view: the project and the user's membership
    set by the decorator, `htmx` by django-htmx's middleware."""

    project: Project
    membership: Membership
    htmx: HtmxDetails


def may_create_accounts(user: Any) -> bool:
    """Whether `user` may create accounts from a members page: staff, or every lead where
    LABELWISE_LEADS_CREATE_USERS is on. Anyone may create a project (and so be a lead), so
    a lead alone is not enough."""
    return bool(getattr(user, "is_staff", False) or settings.LABELWISE_LEADS_CREATE_USERS)


def project_view(*roles: str) -> Callable:
    """Decorates a view taking `pk` (the project id): non-members get 404 (they must not
    learn the project exists), members without one of `roles` get 403. The view receives
    `request.project` and `request.membership`."""
    allowed = set(roles or MEMBERS)

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, pk: int, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = selectors.membership_for(request.user, pk)
            if membership.role not in allowed:
                raise PermissionDenied("Your role in this project does not allow this.")
            project_request = cast(ProjectRequest, request)
            project_request.membership = membership
            project_request.project = membership.project
            return view(project_request, pk, *args, **kwargs)

        return wrapper

    return decorator
