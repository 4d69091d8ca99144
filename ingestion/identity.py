"""First-party identity: the _dfid cookie, vendor ID cookies, and ad click IDs from page URLs."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from django.http import HttpResponse

TWO_YEARS = 63_072_000
NINETY_DAYS = 7_776_000
THIRTEEN_MONTHS = 34_128_000  # 395 days, TikTok's _ttp lifetime

CLICK_ID_PARAMS = (
    "gclid", "fbclid", "ttclid", "li_fat_id", "ScCid", "epik", "tduid",
    "msclkid", "wbraid", "gbraid", "dclid", "twclid",
)
_CLICK_ID_SET = frozenset(CLICK_ID_PARAMS)


@dataclass(frozen=True, slots=True)
class Cookie:
    name: str
    value: str
    max_age: int
    http_only: bool


@dataclass(slots=True)
class Identity:
    """The visitor's IDs for the envelope, and the cookies the response must set."""

    dfid: str
    vendor_ids: dict[str, str]
    new_cookies: list[Cookie] = field(default_factory=list)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def resolve_identity(cookies: Mapping[str, str], click_ids: Mapping[str, str], *, now_ms: int) -> Identity:
    """Read existing cookies (never overwritten) and mint the missing ones."""
    new: list[Cookie] = []
    now_s = now_ms // 1000

    dfid = cookies.get("_dfid", "")
    if not _is_uuid(dfid):
        dfid = str(uuid.uuid4())
        new.append(Cookie("_dfid", dfid, TWO_YEARS, http_only=True))

    def vendor(name: str, make: str, max_age: int) -> str:
        existing = cookies.get(name)
        if existing:
            return existing
        new.append(Cookie(name, make, max_age, http_only=False))
        return make

    vendor_ids = {
        "ga": vendor("_ga", f"GA1.1.{secrets.randbelow(2**31)}.{now_s}", TWO_YEARS),
        "fbp": vendor("_fbp", f"fb.1.{now_ms}.{secrets.randbelow(9 * 10**9) + 10**9}", NINETY_DAYS),
        "ttp": vendor("_ttp", str(uuid.uuid4()), THIRTEEN_MONTHS),
    }
    if "fbclid" in click_ids or cookies.get("_fbc"):
        vendor_ids["fbc"] = vendor("_fbc", f"fb.1.{now_ms}.{click_ids.get('fbclid', '')}", NINETY_DAYS)
    if "gclid" in click_ids or cookies.get("_gcl_aw"):
        vendor_ids["gclAw"] = vendor("_gcl_aw", f"GCL.{now_s}.{click_ids.get('gclid', '')}", NINETY_DAYS)
    return Identity(dfid=dfid, vendor_ids=vendor_ids, new_cookies=new)


def click_ids_from_query(query: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in parse_qsl(query.lstrip("?"), keep_blank_values=False):
        if name in _CLICK_ID_SET and value and name not in found:
            found[name] = value
    return found


def click_ids_from_page(page: object) -> dict[str, str]:
    """Click IDs in ``context.page.url``'s query and ``context.page.search``."""
    if not isinstance(page, dict):
        return {}
    found: dict[str, str] = {}
    search = page.get("search")
    if isinstance(search, str) and search:
        found.update(click_ids_from_query(search))
    url = page.get("url")
    if isinstance(url, str) and "?" in url:
        # The query as urlsplit finds it, without urlsplit's ValueError on a malformed host ("https://[x").
        query = url.partition("#")[0].partition("?")[2]
        for name, value in click_ids_from_query(query).items():
            found.setdefault(name, value)
    return found


def set_cookies(response: HttpResponse, visitor: Identity, domain: str | None) -> None:
    """The visitor's new cookies; readable by page scripts except _dfid. Never overwrites: only
    cookies the request did not carry are in ``new_cookies``."""
    for cookie in visitor.new_cookies:
        response.set_cookie(
            cookie.name,
            cookie.value,
            max_age=cookie.max_age,
            domain=domain,
            secure=True,
            httponly=cookie.http_only,
            samesite="Lax",
        )
