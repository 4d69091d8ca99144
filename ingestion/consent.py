"""Consent: the forms real clients send, read into one canonical set of categories, and what that
set (with Global Privacy Control and the pipeline's "consent required") lets the gateway mint.

The forms read from an event's ``context``:

- Segment's consent wrapper: ``consent.categoryPreferences = {"Advertising": false, "C0002": true, …}``;
- flat values: ``consent = {"analytics": true, "marketing": false, "ad_storage": "denied", …}``;
- a list of granted categories: ``consent.categories = ["analytics", "functional"]`` (the others are denied);
- RudderStack's ``consentManagement = {"allowedConsentIds": […], "deniedConsentIds": […]}``.

Category names are the site's own; they are matched case- and punctuation-insensitively against the
usual names of consent platforms (OneTrust's C000n groups, Google consent mode's ``*_storage``).
Unknown names are ignored. When several names land on one category, a denial wins.

The canonical set goes on every event as ``context.consent.canonical``: ``essential``, ``functional``,
``analytics``, ``marketing``, ``advertising``, ``personalization``, each true, false or null (not
said). The event is tagged, never dropped: downstream decides. A pipeline that requires consent
treats "not said" as denied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

ESSENTIAL, FUNCTIONAL, ANALYTICS = "essential", "functional", "analytics"
MARKETING, ADVERTISING, PERSONALIZATION = "marketing", "advertising", "personalization"
CATEGORIES = (ESSENTIAL, FUNCTIONAL, ANALYTICS, MARKETING, ADVERTISING, PERSONALIZATION)

Canonical = dict[str, bool | None]

# Names as consent platforms and sites spell them, lowercased with everything but letters and
# digits removed ("Strictly Necessary" -> "strictlynecessary", "ad_storage" -> "adstorage").
_NAMES = {
    ESSENTIAL: ("essential", "necessary", "strictlynecessary", "required", "securitystorage", "c0001"),
    FUNCTIONAL: ("functional", "functionality", "functionalitystorage", "preferences", "preference", "c0003"),
    ANALYTICS: ("analytics", "analyticsstorage", "performance", "statistics", "measurement", "c0002"),
    MARKETING: ("marketing",),
    ADVERTISING: ("advertising", "ads", "targeting", "adstorage", "aduserdata", "c0004"),
    PERSONALIZATION: ("personalization", "personalisation", "adpersonalization", "personalizationstorage"),
}
_CATEGORY_OF = {name: category for category, names in _NAMES.items() for name in names}
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_GRANTED = frozenset({"true", "granted", "yes", "allow", "allowed", "accepted", "optin", "1"})
_DENIED = frozenset({"false", "denied", "no", "deny", "rejected", "optout", "0"})
# Longer names are no category we know; keep the work per event bounded whatever a page sends.
_MAX_NAME = 64
_MAX_ENTRIES = 100


class Permits(NamedTuple):
    """Which identifier cookies may be minted (and read into the event) beside the strictly necessary ``_dfid``."""

    analytics: bool
    advertising: bool


ALL_PERMITTED = Permits(analytics=True, advertising=True)


def _category(name: object) -> str | None:
    if not isinstance(name, str) or len(name) > _MAX_NAME:
        return None
    return _CATEGORY_OF.get(_NOT_ALNUM.sub("", name.lower()))


def _choice(value: object) -> bool | None:
    if value is True or value is False:
        return value
    if isinstance(value, str) and len(value) <= _MAX_NAME:
        word = _NOT_ALNUM.sub("", value.lower())
        if word in _GRANTED:
            return True
        if word in _DENIED:
            return False
    if type(value) is int and value in (0, 1):
        return bool(value)
    return None


def _say(found: Canonical, category: str | None, choice: bool | None) -> None:
    """Record one statement; a denial is never overridden by a grant under another name."""
    if category is None or choice is None or found.get(category) is False:
        return
    found[category] = choice


def _read_preferences(found: Canonical, preferences: Mapping[Any, Any]) -> None:
    for name, value in list(preferences.items())[:_MAX_ENTRIES]:
        _say(found, _category(name), _choice(value))


def _read_consent(found: Canonical, consent: object) -> None:
    if not isinstance(consent, dict):
        return
    preferences = consent.get("categoryPreferences")
    if isinstance(preferences, dict):
        _read_preferences(found, preferences)
    categories = consent.get("categories")
    if isinstance(categories, dict):
        _read_preferences(found, categories)
    elif isinstance(categories, list):
        # A list names what was granted; every other category was not (strictly necessary storage aside).
        granted = {_category(name) for name in categories[:_MAX_ENTRIES]}
        for category in CATEGORIES:
            if category != ESSENTIAL or category in granted:
                _say(found, category, category in granted)
    # Flat values: every other key that names a category.
    for name, value in list(consent.items())[:_MAX_ENTRIES]:
        if name not in ("categoryPreferences", "categories", "canonical"):
            _say(found, _category(name), _choice(value))


def _read_consent_management(found: Canonical, management: object) -> None:
    """RudderStack's consent manager integration: the ids the visitor allowed and denied."""
    if not isinstance(management, dict):
        return
    for key, choice in (("deniedConsentIds", False), ("allowedConsentIds", True)):
        ids = management.get(key)
        if isinstance(ids, list):
            for name in ids[:_MAX_ENTRIES]:
                _say(found, _category(name), choice)


def canonical(context: Mapping[str, Any] | None, *, required: bool = False) -> Canonical:
    """The categories an event's context says, each True, False or None; with ``required``, None is False.

    ``essential`` is True unless the page itself says otherwise: strictly necessary storage needs no consent."""
    found: Canonical = {}
    if context:
        _read_consent(found, context.get("consent"))
        _read_consent_management(found, context.get("consentManagement"))
    result: Canonical = {category: found.get(category) for category in CATEGORIES}
    if result[ESSENTIAL] is None:
        result[ESSENTIAL] = True
    if required:
        for category, value in result.items():
            if value is None:
                result[category] = False
    return result


# What an event whose page said nothing carries: built once (most events say nothing; bench/).
_NOT_SAID = canonical(None)
_NOT_SAID_REQUIRED = canonical(None, required=True)


def tag(context: dict[str, Any], *, required: bool) -> None:
    """Put ``canonical`` into ``context["consent"]`` (a copy; the client's own keys are kept)."""
    given = context.get("consent")
    if given is None and "consentManagement" not in context:
        context["consent"] = {"canonical": (_NOT_SAID_REQUIRED if required else _NOT_SAID).copy()}
        return
    found = canonical(context, required=required)
    if isinstance(given, dict):
        context["consent"] = {**given, "canonical": found}
    elif given is None:
        context["consent"] = {"canonical": found}
    else:
        context["consent"] = {"given": given, "canonical": found}


def _allows(values: Iterable[bool | None], *, required: bool) -> bool:
    """Not denied under any governing name; with ``required``, also granted under one of them."""
    values = tuple(values)
    if False in values:
        return False
    return True in values if required else True


def _contexts(content: object) -> list[Mapping[str, Any]]:
    """The contexts that speak for a request: the event's, or a batch's own and each of its events'."""
    if not isinstance(content, dict):
        return []
    contexts: list[Mapping[str, Any]] = []
    top = content.get("context")
    if isinstance(top, dict):
        contexts.append(top)
    items = content.get("batch")
    if isinstance(items, list):
        for item in items[: _MAX_ENTRIES * 5]:
            if isinstance(item, dict) and isinstance(item.get("context"), dict):
                contexts.append(item["context"])
    return contexts


def cookie_permits(content: object, meta: Mapping[str, Any], *, required: bool) -> Permits:
    """What the request's consent lets the gateway mint: the analytics ID unless analytics is denied,
    the advertising IDs unless advertising or marketing is denied and never with ``Sec-GPC: 1``.
    With ``required``, a category also has to be granted. A batch speaks through all its events: a
    denial in any of them wins, since one set of cookies answers them all."""
    found: Canonical = {}
    for context in _contexts(content):
        if "consent" in context or "consentManagement" in context:  # most say nothing: skip the reading
            for category, value in canonical(context).items():
                if category != ESSENTIAL:
                    _say(found, category, value)
    gpc = meta.get("HTTP_SEC_GPC", "").strip() == "1"
    return Permits(
        analytics=_allows((found.get(ANALYTICS),), required=required),
        advertising=not gpc and _allows((found.get(ADVERTISING), found.get(MARKETING)), required=required),
    )
