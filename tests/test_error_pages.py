"""Error pages keep the site's layout and offer a way back (DEBUG off, as in production)."""

from __future__ import annotations

import pytest

from annotate.models import Membership


@pytest.mark.django_db
def test_404_and_403_pages_have_the_layout_and_a_way_home(client, project, viewer, settings):
    settings.DEBUG = False
    client.force_login(viewer)
    missing = client.get("/p/999999/")
    assert missing.status_code == 404
    html = missing.content.decode()
    assert 'data-status="404"' in html and "Back to your projects" in html
    assert 'class="topbar"' in html  # the site's layout, not Django's bare page

    assert Membership.objects.get(project=project, user=viewer).role == "viewer"
    refused = client.get(f"/p/{project.pk}/settings/")
    assert refused.status_code == 403
    assert 'data-status="403"' in refused.content.decode()


@pytest.mark.django_db
def test_500_page_renders_without_a_request_context(settings):
    settings.DEBUG = False
    from django.template.loader import render_to_string

    # Django renders 500.html with an empty context: it must not need the request.
    html = render_to_string("500.html", {})
    assert 'data-status="500"' in html and "Back to your projects" in html
