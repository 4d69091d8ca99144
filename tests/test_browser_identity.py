"""First-party identity on the browser endpoints: the _dfid cookie, vendor ID cookies, click IDs."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from pipelines.services import PipelineCreated
from tests.fixtures.gateway import Gateway
from tests.fixtures.http import post
from tests.fixtures.kafka import the_record
from tests.fixtures.payloads import returning_visitor

TWO_YEARS = "63072000"
NINETY_DAYS = "7776000"
THIRTEEN_MONTHS = "34128000"
ONE_YEAR = "31536000"
VENDOR_COOKIES = ("_ga", "_fbp", "_ttp", "_pin_unauth", "_scid")
FBCLID = "IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgE"
GCLID = "Cj0KCQjw3tCyBhDBARIsAEY0XNm-_kqLAx9dQ3rGFhX8aLNu_BwE"


def is_uuid4(value: str) -> bool:
    parsed = uuid.UUID(value)
    return parsed.version == 4 and str(parsed) == value


# -- first visit --------------------------------------------------------------------------------------


def test_a_first_visit_sets_an_http_only_dfid_cookie_for_two_years_on_the_pipelines_domain(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated]
) -> None:
    # Given a pipeline whose cookies belong to the site's registrable domain
    created = make_pipeline(cookie_domain="shop.example.com")

    # When a browser with no cookies posts
    response = post(gateway.url + "/v1/p", {"name": "Home"}, key=created.pipeline_key)

    # Then it gets a UUID v4 _dfid, HttpOnly, Secure, Lax, for two years, on that domain
    assert response.status == 200
    dfid = response.cookies["_dfid"]
    assert is_uuid4(dfid.value)
    assert dfid.attributes_except_expires() == {
        "domain": "shop.example.com",
        "httponly": True,
        "max-age": TWO_YEARS,
        "path": "/",
        "samesite": "Lax",
        "secure": True,
    }


def test_a_first_visit_sets_vendor_cookies_that_page_scripts_can_read(
    gateway: Gateway, make_pipeline: Callable[..., PipelineCreated]
) -> None:
    # Given a pipeline with a cookie domain
    created = make_pipeline(cookie_domain="shop.example.com")

    # When a browser with no cookies posts
    before_ms = int(time.time() * 1000)
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=created.pipeline_key)
    after_ms = int(time.time() * 1000)

    # Then _ga, _fbp, _ttp, _pin_unauth and _scid are set in the vendors' formats, readable by scripts (no HttpOnly)
    assert response.status == 200
    cookies = response.cookies
    ga = re.fullmatch(r"GA1\.1\.(\d+)\.(\d+)", cookies["_ga"].value)
    assert ga, cookies["_ga"].value
    assert 0 <= int(ga[1]) < 2**31
    assert before_ms // 1000 <= int(ga[2]) <= after_ms // 1000
    fbp = re.fullmatch(r"fb\.1\.(\d+)\.(\d{10})", cookies["_fbp"].value)
    assert fbp, cookies["_fbp"].value
    assert before_ms <= int(fbp[1]) <= after_ms
    assert is_uuid4(cookies["_ttp"].value)
    assert is_uuid4(cookies["_pin_unauth"].value)
    assert is_uuid4(cookies["_scid"].value)
    lifetimes = {name: cookies[name].attributes_except_expires() for name in VENDOR_COOKIES}
    shared = {"domain": "shop.example.com", "path": "/", "samesite": "Lax", "secure": True}
    assert lifetimes == {
        "_ga": {**shared, "max-age": TWO_YEARS},
        "_fbp": {**shared, "max-age": NINETY_DAYS},
        "_ttp": {**shared, "max-age": THIRTEEN_MONTHS},
        "_pin_unauth": {**shared, "max-age": ONE_YEAR},
        "_scid": {**shared, "max-age": THIRTEEN_MONTHS},
    }


def test_cookies_carry_no_domain_when_neither_the_pipeline_nor_the_gateway_sets_one(
    gateway: Gateway, pipeline: PipelineCreated
) -> None:
    # Given a pipeline without a cookie domain, on a gateway without COOKIE_DOMAIN

    # When a browser with no cookies posts
    response = post(gateway.url + "/v1/p", {"name": "Home"}, key=pipeline.pipeline_key)

    # Then every cookie is host-only
    assert response.status == 200
    assert set(response.cookies) == {"_dfid", *VENDOR_COOKIES}
    assert [name for name, cookie in response.cookies.items() if "domain" in cookie.attributes] == []


def test_a_first_visits_dfid_and_vendor_cookies_are_the_ids_in_the_envelope(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a first visit whose body carries no anonymousId

    # When it posts
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key)

    # Then the new cookies' values are the envelope's anonymousId and vendorIds
    assert response.status == 200
    cookies = response.cookies
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["anonymousId"] == cookies["_dfid"].value
    assert record.value["context"]["vendorIds"] == {
        "ga": cookies["_ga"].value,
        "fbp": cookies["_fbp"].value,
        "ttp": cookies["_ttp"].value,
        "pinUnauth": cookies["_pin_unauth"].value,
        "scid": cookies["_scid"].value,
    }


# -- returning visitor --------------------------------------------------------------------------------


def test_a_returning_visitor_keeps_its_cookies(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a browser that already holds every cookie
    cookies = returning_visitor()

    # When it posts again
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, cookies=cookies)

    # Then nothing is set again
    assert response.status == 200
    assert response.cookies == {}


def test_a_returning_visitors_dfid_is_reused_as_the_anonymous_id(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a browser that already holds every cookie
    cookies = returning_visitor()

    # When it posts an event with no anonymousId
    response = post(gateway.url + "/v1/t", {"event": "Viewed"}, key=pipeline.pipeline_key, cookies=cookies)

    # Then the event is the same visitor's, with the same vendor ids, keyed by the _dfid
    assert response.status == 200
    record = the_record(kafka_bootstrap, kafka_topic, pipeline)
    assert record.value["anonymousId"] == cookies["_dfid"]
    assert record.value["context"]["vendorIds"] == {
        "ga": cookies["_ga"],
        "fbp": cookies["_fbp"],
        "ttp": cookies["_ttp"],
        "pinUnauth": cookies["_pin_unauth"],
        "scid": cookies["_scid"],
    }
    assert record.key == f"{pipeline.pipeline.id}:{cookies['_dfid']}"


def test_an_anonymous_id_in_the_body_wins_over_the_dfid_cookie(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given an SDK that keeps its own anonymousId, in a browser that also holds a _dfid
    cookies = returning_visitor()

    # When it posts
    response = post(
        gateway.url + "/v1/t",
        {"event": "Viewed", "anonymousId": "sdk-anon-1"},
        key=pipeline.pipeline_key,
        cookies=cookies,
    )

    # Then the body's id is the event's
    assert response.status == 200
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["anonymousId"] == "sdk-anon-1"


def test_a_dfid_cookie_that_is_not_a_uuid_is_replaced(gateway: Gateway, pipeline: PipelineCreated) -> None:
    # Given a browser whose _dfid was tampered with
    cookies = {**returning_visitor(), "_dfid": "not-a-uuid"}

    # When it posts
    response = post(gateway.url + "/v1/p", {"name": "Home"}, key=pipeline.pipeline_key, cookies=cookies)

    # Then only the _dfid is set anew, to a UUID v4
    assert response.status == 200
    assert set(response.cookies) == {"_dfid"}
    assert is_uuid4(response.cookies["_dfid"].value)


# -- click ids ----------------------------------------------------------------------------------------


def test_an_fbclid_on_the_page_url_sets_the_fbc_cookie_and_becomes_a_click_id(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a visitor arriving from a Facebook ad
    page = {"url": f"https://shop.example.com/landing?utm_source=fb&fbclid={FBCLID}"}

    # When the page call is posted
    before_ms = int(time.time() * 1000)
    response = post(gateway.url + "/v1/p", {"context": {"page": page}}, key=pipeline.pipeline_key)
    after_ms = int(time.time() * 1000)

    # Then _fbc = fb.1.<ms>.<fbclid> for 90 days, and the click id and _fbc are in the envelope
    assert response.status == 200
    fbc = response.cookies["_fbc"]
    match = re.fullmatch(r"fb\.1\.(\d+)\.(.+)", fbc.value)
    assert match and match[2] == FBCLID, fbc.value
    assert before_ms <= int(match[1]) <= after_ms
    assert fbc.attributes_except_expires() == {"max-age": NINETY_DAYS, "path": "/", "samesite": "Lax", "secure": True}
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert context["clickIds"] == {"fbclid": FBCLID}
    assert context["vendorIds"]["fbc"] == fbc.value


def test_a_gclid_on_the_page_url_sets_the_gcl_aw_cookie_and_becomes_a_click_id(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a visitor arriving from a Google ad
    page = {"url": f"https://shop.example.com/landing?gclid={GCLID}&utm_medium=cpc"}

    # When the page call is posted
    before_s = int(time.time())
    response = post(gateway.url + "/v1/p", {"context": {"page": page}}, key=pipeline.pipeline_key)
    after_s = int(time.time())

    # Then _gcl_aw = GCL.<s>.<gclid> for 90 days, and the click id is in the envelope
    assert response.status == 200
    gcl_aw = response.cookies["_gcl_aw"]
    match = re.fullmatch(r"GCL\.(\d+)\.(.+)", gcl_aw.value)
    assert match and match[2] == GCLID, gcl_aw.value
    assert before_s <= int(match[1]) <= after_s
    assert gcl_aw.attributes_except_expires() == {
        "max-age": NINETY_DAYS,
        "path": "/",
        "samesite": "Lax",
        "secure": True,
    }
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["clickIds"] == {"gclid": GCLID}


def test_an_existing_fbc_cookie_is_not_overwritten_by_a_new_fbclid(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a returning visitor who already holds an _fbc from an earlier ad click
    cookies = {**returning_visitor(), "_fbc": "fb.1.1714561200000.EarlierClick"}
    page = {"url": f"https://shop.example.com/landing?fbclid={FBCLID}"}

    # When they arrive from another ad
    response = post(gateway.url + "/v1/p", {"context": {"page": page}}, key=pipeline.pipeline_key, cookies=cookies)

    # Then the cookie stays as it was; the new click is still reported as a click id
    assert response.status == 200
    assert response.cookies == {}
    context = the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]
    assert context["vendorIds"]["fbc"] == "fb.1.1714561200000.EarlierClick"
    assert context["clickIds"] == {"fbclid": FBCLID}


def test_every_known_click_id_on_the_page_url_or_search_is_collected(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page URL and search string carrying every click id the gateway knows, and other parameters
    in_url = {
        "ttclid": "tt-1",
        "li_fat_id": "li-1",
        "ScCid": "sc-1",
        "epik": "ep-1",
        "tduid": "td-1",
        "msclkid": "ms-1",
    }
    in_search = {"wbraid": "wb-1", "gbraid": "gb-1", "dclid": "dc-1", "twclid": "tw-1"}
    url_query = "&".join(f"{k}={v}" for k, v in in_url.items())
    page = {
        "url": f"https://shop.example.com/?utm_source=x&{url_query}",
        "search": "?" + "&".join(f"{k}={v}" for k, v in in_search.items()) + "&ref=home",
    }

    # When the page call is posted
    response = post(gateway.url + "/v1/p", {"context": {"page": page}}, key=pipeline.pipeline_key)

    # Then each one is in context.clickIds, and nothing else is
    assert response.status == 200
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["clickIds"] == {**in_url, **in_search}


def test_a_page_url_with_a_malformed_host_still_yields_its_click_ids(
    gateway: Gateway, pipeline: PipelineCreated, kafka_bootstrap: str, kafka_topic: str
) -> None:
    # Given a page URL no URL parser accepts (an unbalanced "[" in the host), with a gclid in its query
    page = {"url": f"https://[shop.example.com/landing?gclid={GCLID}#top"}

    # When the page call is posted
    response = post(gateway.url + "/v1/p", {"context": {"page": page}}, key=pipeline.pipeline_key)

    # Then the event is accepted, with the click id
    assert response.status == 200, response.body
    assert the_record(kafka_bootstrap, kafka_topic, pipeline).value["context"]["clickIds"] == {"gclid": GCLID}
