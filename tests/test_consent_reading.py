"""How ingestion.consent reads what pages send, case by case (the end-to-end cases are in test_consent.py)."""

from __future__ import annotations

from ingestion import consent
from ingestion.consent import Permits

NOT_SAID = {"functional": None, "analytics": None, "marketing": None, "advertising": None, "personalization": None}


def test_a_denial_under_one_name_wins_over_a_grant_under_another() -> None:
    # Given a banner that names advertising twice, granted as "Advertising" and denied as OneTrust's C0004
    context = {"consent": {"categoryPreferences": {"Advertising": True, "C0004": False}}}

    # When it is read
    found = consent.canonical(context)

    # Then advertising is denied
    assert found["advertising"] is False


def test_names_the_gateway_does_not_know_and_values_it_cannot_read_are_ignored() -> None:
    # Given a consent object with made-up categories and unreadable values
    context = {"consent": {"newsletter": True, "analytics": "maybe", "marketing": {"x": 1}, "x" * 500: False}}

    # When it is read
    found = consent.canonical(context)

    # Then nothing was said
    assert found == {"essential": True, **NOT_SAID}


def test_a_consent_that_is_not_an_object_is_kept_beside_the_canonical_set() -> None:
    # Given a page that sends consent as a string
    context: dict[str, object] = {"consent": "all"}

    # When the event is tagged
    consent.tag(context, required=False)

    # Then the string is kept and nothing is read from it
    assert context["consent"] == {"given": "all", "canonical": {"essential": True, **NOT_SAID}}


def test_a_batch_speaks_through_every_event_and_a_denial_in_one_wins() -> None:
    # Given a batch whose first event grants advertising and whose last one denies it
    content = {
        "batch": [
            {"context": {"consent": {"advertising": True, "analytics": True}}},
            {"context": {"consent": {"advertising": False}}},
        ]
    }

    # When the cookies for the request are decided
    permits = consent.cookie_permits(content, {}, required=False)

    # Then no advertising id is minted, the analytics id is
    assert permits == Permits(analytics=True, advertising=False)


def test_global_privacy_control_denies_advertising_whatever_the_page_says() -> None:
    # Given a page that grants everything, in a browser that sends Sec-GPC: 1
    content = {"context": {"consent": {"advertising": True, "marketing": True, "analytics": True}}}

    # When the cookies for the request are decided
    permits = consent.cookie_permits(content, {"HTTP_SEC_GPC": "1"}, required=True)

    # Then analytics is permitted and advertising is not
    assert permits == Permits(analytics=True, advertising=False)
