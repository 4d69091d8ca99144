"""The admin's "Live events" page in a real headless Chromium, against a real gateway (issue 10):
a staff member logs in, opens a pipeline's live page, and sees events arrive as they are sent.

``LIVE_VIEW_SCREENSHOT=docs/live-view.png bin/test tests/test_live_view_chromium.py`` refreshes the
README's picture (the pause/filter test takes it with a few events and a rejected row open).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.admin.utils import quote
from django.contrib.auth.models import User
from playwright.sync_api import Page, Playwright, sync_playwright

from pipelines.services import PipelineCreated
from tests.fixtures.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.fixtures.gateway import ROOT, Gateway
from tests.fixtures.http import Response, post

PASSWORD = "correct horse battery staple"
ROWS_WITHIN = 5.0  # seconds, from the event's answer to its row (issue 10)


@pytest.fixture(scope="module")
def collected_static(tmp_path_factory: pytest.TempPathFactory, gateway_env: dict[str, str]) -> Path:
    """A var dir with the admin's static files collected, as the image has them (whitenoise serves
    them from there; without DEBUG it does not look in the apps)."""
    var_dir = tmp_path_factory.mktemp("gateway-var")
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=ROOT,
        env={**os.environ, **gateway_env, "GATEWAY_VAR_DIR": str(var_dir)},
        check=True,
    )
    return var_dir


@pytest.fixture
def admin_gateway(gateway_factory: Callable[..., Gateway], collected_static: Path) -> Gateway:
    return gateway_factory(GATEWAY_VAR_DIR=str(collected_static))


@pytest.fixture
def staff_member(transactional_db: None) -> str:
    return User.objects.create_superuser("ops", "ops@example.com", PASSWORD).username


@pytest.fixture
def open_page(transactional_db: None) -> Iterator[Callable[[], Page]]:
    """A page in a fresh headless Chromium, opened on demand (after the test's ORM calls: Playwright's
    sync API marks the thread's event loop as running, and Django then refuses the ORM)."""
    playwright: Playwright | None = None

    def open_one() -> Page:
        nonlocal playwright
        if not os.path.exists(CHROMIUM):  # never `playwright install`: no downloads, CI installs Debian's
            pytest.fail(f"{CHROMIUM} is missing: run `apt-get install chromium` (CI installs it)")
        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 600}).new_page()
        page.set_default_timeout(15_000)
        return page

    yield open_one
    if playwright is not None:
        playwright.stop()


def open_live_page(page: Page, gateway: Gateway, username: str, pipeline_id: str) -> None:
    """Log in to the admin, open the pipeline, follow its "Live events" link, wait until it is live."""
    change_page = f"/admin/pipelines/pipeline/{quote(pipeline_id)}/change/"
    page.goto(f"{gateway.url}/admin/login/?next={change_page}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{gateway.url}{change_page}")
    page.click("text=Live events")
    page.wait_for_selector('#live-state[data-state="live"]')


def row_texts(page: Page, selector: str) -> list[list[str]]:
    texts: list[list[str]] = page.eval_on_selector_all(
        selector, "rows => rows.map(row => [...row.cells].map(cell => cell.textContent.trim()))"
    )
    return texts


def track(gateway: Gateway, created: PipelineCreated, event: dict[str, object], path: str = "/v1/t") -> Response:
    return post(gateway.url + path, event, key=created.pipeline_key)


@pytest.mark.browser
def test_a_staff_member_sees_an_accepted_and_a_rejected_event_appear_on_the_live_page_within_5_seconds(
    admin_gateway: Gateway,
    make_pipeline: Callable[..., PipelineCreated],
    staff_member: str,
    open_page: Callable[[], Page],
) -> None:
    # Given a staff member on a pipeline's live page
    created = make_pipeline(name="Shop")
    page = open_page()
    open_live_page(page, admin_gateway, staff_member, created.pipeline.id)

    # When the gateway takes one event and refuses another (a track call without an event name)
    accepted = track(admin_gateway, created, {"event": "Order Completed", "userId": "user-42"})
    refused = track(admin_gateway, created, {"anonymousId": "visitor-7", "properties": {"total": 12}})
    answered_at = time.monotonic()
    assert (accepted.status, refused.status) == (200, 400), (accepted.body, refused.body)

    # Then both rows appear within 5 seconds, each with its status
    page.wait_for_selector("tr.live-accepted", timeout=ROWS_WITHIN * 1000)
    page.wait_for_selector("tr.live-rejected", timeout=max(0.1, ROWS_WITHIN - (time.monotonic() - answered_at)) * 1000)
    assert time.monotonic() - answered_at < ROWS_WITHIN
    [accepted_row] = row_texts(page, "tr.live-accepted")
    [rejected_row] = row_texts(page, "tr.live-rejected")
    assert accepted_row[1:] == ["track", "Order Completed", "user-42", "browser", "accepted"], accepted_row
    assert rejected_row[1:] == ["—", "—", "visitor-7", "browser", "rejected INVALID_PAYLOAD"], rejected_row
    assert page.text_content("#live-counts") == "1 accepted · 1 rejected"


@pytest.mark.browser
def test_pausing_holds_new_rows_filtering_hides_rows_and_a_click_shows_the_envelope(
    admin_gateway: Gateway,
    make_pipeline: Callable[..., PipelineCreated],
    staff_member: str,
    open_page: Callable[[], Page],
) -> None:
    # Given a staff member on a live page with two events shown
    created = make_pipeline(name="Shop")
    page = open_page()
    open_live_page(page, admin_gateway, staff_member, created.pipeline.id)
    assert track(admin_gateway, created, {"event": "Product Viewed", "anonymousId": "visitor-1"}).status == 200
    page_view = {"name": "Pricing", "anonymousId": "visitor-1", "properties": {"path": "/pricing"}}
    assert track(admin_gateway, created, page_view, path="/v1/p").status == 200
    page.wait_for_function("document.querySelectorAll('tr.live-row').length === 2")

    # When they pause and an event arrives
    page.click("#live-pause")
    assert track(admin_gateway, created, {"event": "Checkout Started", "userId": "user-9"}).status == 200
    page.wait_for_function("document.getElementById('live-counts').textContent.includes('1 waiting')")

    # Then it is held back until they resume
    assert len(row_texts(page, "tr.live-row")) == 2
    page.click("#live-pause")
    page.wait_for_function("document.querySelectorAll('tr.live-row').length === 3")
    assert [row[2] for row in row_texts(page, "tr.live-row")] == ["Checkout Started", "Pricing", "Product Viewed"]

    # When they filter by type, then only that type is shown; by text, only rows containing it
    page.select_option("#live-type", "page")
    assert [row[2] for row in row_texts(page, "tr.live-row:not([hidden])")] == ["Pricing"]
    page.select_option("#live-type", "")
    page.fill("#live-text", "user-9")
    assert [row[2] for row in row_texts(page, "tr.live-row:not([hidden])")] == ["Checkout Started"]
    page.fill("#live-text", "")

    # When a refused event arrives and they click its row
    refused = {"anonymousId": "visitor-3", "context": {"page": {"url": "https://shop.example/cart"}}}
    assert track(admin_gateway, created, refused).status == 400
    page.click("tr.live-rejected")

    # Then the pane shows the whole rejected record, its payload as the client sent it
    assert page.text_content("#live-detail-title") == "Rejected: INVALID_PAYLOAD"
    detail = page.text_content("#live-detail-body") or ""
    assert '"message": "a track event needs a non-empty event name"' in detail
    assert '"url": "https://shop.example/cart"' in detail

    # And a click on an accepted row shows its envelope
    page.click("tr.live-row:has-text('Pricing')")
    assert page.text_content("#live-detail-title") == "Envelope"
    envelope = page.text_content("#live-detail-body") or ""
    assert f'"pipelineId": "{created.pipeline.id}"' in envelope
    assert '"path": "/pricing"' in envelope

    page.click("tr.live-rejected")
    if os.environ.get("LIVE_VIEW_SCREENSHOT"):
        page.screenshot(path=os.environ["LIVE_VIEW_SCREENSHOT"], full_page=False)
