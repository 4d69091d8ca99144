"""Consent and Global Privacy Control (issue 12, build 3): the forms pages send, read into
``context.consent.canonical``; which cookies that lets the gateway set; "consent required"."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post, request
from tests.fixtures.kafka import the_record
from tests.fixtures.payloads import returning_visitor
from tests.fixtures.privacy import set_privacy

AD_COOKIES = {"_fbp", "_ttp", "_pin_unauth", "_scid", "_fbc", "_gcl_aw"}
LANDING = {"url": "https://shop.example.com/landing?gclid=G-1&fbclid=F-1"}


def page_call(consent: Any = None, **context: Any) -> dict[str, Any]:
    """A page call from a visitor who came from an ad (gclid and fbclid on the URL)."""
    body: dict[str, Any] = {"name": "Landing", "context": {"page": LANDING, **context}}
    if consent is not None:
        body["context"]["consent"] = consent
    return body


# -- the forms, read into one canonical set ----------------------------------------------------------------

FORMS = {
    "Segment's categoryPreferences": (
        {"categoryPreferences": {"Advertising": False, "Analytics": True, "Functional": True}},
        {"functional": True, "analytics": True, "marketing": None, "advertising": False, "personalization": None},
    ),
    "flat booleans": (
        {"analytics": False, "marketing": True, "functional": True, "advertising": True},
        {"functional": True, "analytics": False, "marketing": True, "advertising": True, "personalization": None},
    ),
    "a categories list": (
        {"categories": ["analytics", "personalization"]},
        {"functional": False, "analytics": True, "marketing": False, "advertising": False, "personalization": True},
    ),
    "OneTrust groups": (
        {"categoryPreferences": {"C0001": True, "C0002": True, "C0003": False, "C0004": False}},
        {"functional": False, "analytics": True, "marketing": None, "advertising": False, "personalization": None},
    ),
    "Google consent mode": (
        {"ad_storage": "denied", "analytics_storage": "granted", "ad_personalization": "denied"},
        {"functional": None, "analytics": True, "marketing": None, "advertising": False, "personalization": False},
    ),
}


@pytest.mark.parametrize(("consent", "expected"), FORMS.values(), ids=FORMS.keys())
def test_each_consent_form_is_tagged_as_canonical_categories_and_the_event_is_kept(
    gateway: Gateway,
    pipeline: PipelineCreated,
    kafka_bootstrap: str,
    kafka_topic: str,
    consent: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    # Given a page that sends its visitor's consent in one of the forms real clients use

    # When the call is posted
    response = post(gateway.url + "/v1/p", page_call(consent), key=pipeline.pipeline_key)

    # Then the event is published, the page's own form kept and the canonical categories beside it
    assert response.status == 200, response.body
    tagged = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["consent"]
    assert tagged["canonical"] == {"essential": True, **expected}
    assert {k: v for k, v in tagged.items() if k != "canonical"} == consent


def test_rudderstacks_consent_manager_ids_are_read_too(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given RudderStack's consent management context
    body = page_call(consentManagement={"allowedConsentIds": ["C0002"], "deniedConsentIds": ["C0004"]})

    # When it is posted
    response = post(gateway.url + "/v1/page", body, key=pipeline.pipeline_key)

    # Then its ids are read as categories
    assert response.status == 200
    canonical = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["consent"]["canonical"]
    assert (canonical["analytics"], canonical["advertising"]) == (True, False)


# -- what consent lets the gateway set ---------------------------------------------------------------------


def test_without_any_consent_signal_every_identity_cookie_is_set(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a pipeline that does not require consent, and a page that sends none

    # When a visitor from an ad arrives
    response = post(gateway.url + "/v1/p", page_call(), key=pipeline.pipeline_key)

    # Then every identity cookie is set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga", *AD_COOKIES}


def test_advertising_denied_sets_no_advertising_cookie_but_keeps_click_ids_and_the_analytics_id(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a visitor from an ad who denied advertising
    consent = {"categoryPreferences": {"Advertising": False, "Analytics": True}}

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call(consent), key=pipeline.pipeline_key)

    # Then only _dfid and _ga are set; the click ids are still in the event, no advertising id is
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga"}
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert context["clickIds"] == {"gclid": "G-1", "fbclid": "F-1"}
    assert context["vendorIds"] == {"ga": response.cookies["_ga"].value}


def test_marketing_denied_sets_no_advertising_cookie(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a visitor who denied marketing and said nothing of advertising

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call({"marketing": False}), key=pipeline.pipeline_key)

    # Then no advertising cookie is set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga"}


def test_analytics_denied_sets_no_analytics_id(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a visitor who denied analytics only

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call({"analytics": False}), key=pipeline.pipeline_key)

    # Then every cookie but _ga is set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", *AD_COOKIES}


def test_global_privacy_control_sets_no_advertising_cookie_even_with_advertising_granted(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a browser sending Sec-GPC: 1, on a page whose banner says advertising is granted
    consent = {"advertising": True, "marketing": True}

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call(consent), key=pipeline.pipeline_key, headers={"Sec-GPC": "1"})

    # Then no advertising cookie is set, and the event says GPC
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga"}
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert context["gpc"] is True
    assert context["clickIds"] == {"gclid": "G-1", "fbclid": "F-1"}


def test_advertising_ids_a_visitor_already_holds_are_not_reported_once_advertising_is_denied(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a returning visitor holding advertising cookies, who has since denied advertising
    cookies = returning_visitor()

    # When the next call is posted
    response = post(
        gateway.url + "/v1/p", page_call({"advertising": False}), key=pipeline.pipeline_key, cookies=cookies
    )

    # Then the event carries the analytics id only
    assert response.status == 200
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["vendorIds"] == {"ga": cookies["_ga"]}


def test_a_pixel_with_global_privacy_control_sets_no_advertising_cookie(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a mail client that sends Sec-GPC: 1

    # When it loads a pixel with a gclid
    url = f"{gateway.url}/v1/pixel/track?wk={pipeline.pipeline_key}&e=Opened&gclid=G-2"
    response = request("GET", url, headers={"Sec-GPC": "1"})

    # Then only _dfid and _ga are set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga"}


# -- a pipeline that requires consent ----------------------------------------------------------------------


@pytest.fixture
def consent_required_pipeline(make_pipeline: Callable[..., PipelineCreated]) -> PipelineCreated:
    created = make_pipeline()
    set_privacy(created, consent_required=True)
    return created


def test_with_consent_required_a_page_that_sends_no_consent_gets_only_the_dfid(
    gateway: Gateway, consent_required_pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a pipeline that requires consent, and a visitor from an ad whose page sends none yet

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call(), key=consent_required_pipeline.pipeline_key)

    # Then only the strictly necessary cookie is set, and the event is kept, tagged as denied
    assert response.status == 200
    assert set(response.cookies) == {"_dfid"}
    context = the_record(kafka_bootstrap, kafka_topic, consent_required_pipeline).value["context"]
    assert context["consent"]["canonical"] == {
        "essential": True,
        "functional": False,
        "analytics": False,
        "marketing": False,
        "advertising": False,
        "personalization": False,
    }
    assert context["vendorIds"] == {}
    assert context["clickIds"] == {"gclid": "G-1", "fbclid": "F-1"}


def test_with_consent_required_what_the_page_grants_is_set(
    gateway: Gateway, consent_required_pipeline: PipelineCreated
) -> None:
    # Given a pipeline that requires consent, and a visitor who granted analytics only

    # When the page call is posted
    response = post(
        gateway.url + "/v1/p",
        page_call({"categoryPreferences": {"Analytics": True}}),
        key=consent_required_pipeline.pipeline_key,
    )

    # Then _dfid and _ga are set, and nothing for advertising
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga"}


def test_with_consent_required_advertising_granted_sets_the_advertising_ids(
    gateway: Gateway, consent_required_pipeline: PipelineCreated
) -> None:
    # Given a visitor who granted everything
    consent = {"analytics": True, "advertising": True, "marketing": True, "functional": True}

    # When the page call is posted
    response = post(gateway.url + "/v1/p", page_call(consent), key=consent_required_pipeline.pipeline_key)

    # Then every cookie is set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", "_ga", *AD_COOKIES}


def test_with_consent_required_a_pixel_sets_only_the_dfid(
    gateway: Gateway, consent_required_pipeline: PipelineCreated
) -> None:
    # Given a mail client, which cannot send consent

    # When it loads a pixel
    response = request("GET", f"{gateway.url}/v1/pixel/track?wk={consent_required_pipeline.pipeline_key}&e=Opened")

    # Then only the strictly necessary cookie is set
    assert response.status == 200
    assert set(response.cookies) == {"_dfid"}
