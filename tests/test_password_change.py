"""Users change their own password from the top bar's link, and stay logged in."""

from __future__ import annotations

from django.urls import reverse

from tests.conftest import PASSWORD

NEW = "a-much-longer-new-passphrase-9"


def test_user_changes_their_password_and_stays_logged_in(client, annotator):  # type: ignore[no-untyped-def]
    client.login(username="annotator", password=PASSWORD)
    page = client.get(reverse("annotate:home"))
    assert reverse("password_change").encode() in page.content
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": NEW,
            "new_password2": NEW,
        },
    )
    assert response.status_code == 302 and response["Location"] == reverse("password_change_done")
    assert client.get(reverse("annotate:home")).status_code == 200  # still logged in
    annotator.refresh_from_db()
    assert annotator.check_password(NEW) and not annotator.check_password(PASSWORD)


def test_a_wrong_current_password_changes_nothing(client, annotator):  # type: ignore[no-untyped-def]
    client.login(username="annotator", password=PASSWORD)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": "not it",
            "new_password1": NEW,
            "new_password2": NEW,
        },
    )
    assert response.status_code == 200 and b"incorrectly" in response.content
    annotator.refresh_from_db()
    assert annotator.check_password(PASSWORD)


def test_a_weak_new_password_is_refused_with_the_reason(client, annotator):  # type: ignore[no-untyped-def]
    client.login(username="annotator", password=PASSWORD)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "12345",
            "new_password2": "12345",
        },
    )
    assert response.status_code == 200 and b"too short" in response.content
    annotator.refresh_from_db()
    assert annotator.check_password(PASSWORD)


def test_password_page_needs_a_login(client, db):  # type: ignore[no-untyped-def]
    response = client.get(reverse("password_change"))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
