"""The "Live events" admin page (issue 10): linked from each pipeline's change page, for staff only.
What fills it is tested in a real browser (tests/test_live_view_chromium.py)."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from django.test import Client

from pipelines.models import Pipeline

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client() -> Client:
    user = User.objects.create_superuser("ops", "ops@example.com", "correct horse battery staple")
    client = Client()
    client.force_login(user)
    return client


def test_a_pipelines_change_page_links_to_its_live_events(admin_client: Client) -> None:
    # Given a pipeline
    pipeline = Pipeline.objects.create(name="Shop", slug="shop")

    # When its change page is opened
    page = admin_client.get(f"/admin/pipelines/pipeline/{pipeline.pk}/change/", secure=True).content.decode()

    # Then it links to the pipeline's live page (the admin quotes "_" in ids in its URLs)
    assert f'href="/admin/pipelines/pipeline/{quote(pipeline.pk)}/live/"' in page
    assert ">Live events</a>" in page


def test_the_live_page_names_the_pipeline_and_its_socket_and_loads_the_script(admin_client: Client) -> None:
    # Given a pipeline
    pipeline = Pipeline.objects.create(name="Shop", slug="shop")

    # When its live page is opened
    response = admin_client.get(f"/admin/pipelines/pipeline/{pipeline.pk}/live/", secure=True)

    # Then it is the empty table the script fills from the pipeline's socket
    page = response.content.decode()
    assert response.status_code == 200
    assert "Live events: Shop" in page
    assert f'data-socket-path="/ws/pipelines/{pipeline.pk}/live"' in page
    assert '<script src="/static/pipelines/live.js" defer></script>' in page
    for heading in ("Time (UTC)", "Type", "Event", "User or anonymous id", "Source", "Status"):
        assert f"<th>{heading}</th>" in page


def test_the_live_page_of_an_unknown_pipeline_is_not_found(admin_client: Client) -> None:
    assert admin_client.get("/admin/pipelines/pipeline/pip_nope/live/", secure=True).status_code == 404


def test_the_live_page_sends_anyone_not_logged_in_to_the_admin_login(db: None) -> None:
    # Given a pipeline and a visitor without a session
    pipeline = Pipeline.objects.create(name="Shop", slug="shop")

    # When the visitor opens the live page
    response = Client().get(f"/admin/pipelines/pipeline/{pipeline.pk}/live/", secure=True)

    # Then they are sent to log in first
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_a_staff_member_without_the_right_to_view_pipelines_is_refused(db: None) -> None:
    # Given a staff member with no permission on pipelines
    pipeline = Pipeline.objects.create(name="Shop", slug="shop")
    client = Client()
    client.force_login(User.objects.create_user("clerk", "clerk@example.com", "pw-pw-pw-pw", is_staff=True))

    # When they open the live page, then it is forbidden
    assert client.get(f"/admin/pipelines/pipeline/{pipeline.pk}/live/", secure=True).status_code == 403
