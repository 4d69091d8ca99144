"""First-party identity: the _dfid cookie, vendor ID cookies (as consent permits, ingestion.consent),
and ad click IDs from page URLs."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import parse_qsl, quote

from ingestion.consent import ALL_PERMITTED, Permits

TWO_YEARS = 63_072_000
NINETY_DAYS = 7_776_000
THIRTEEN_MONTHS = 34_128_000  # 395 days: TikTok's _ttp, Snap's _scid
ONE_YEAR = 31_536_000  # Pinterest's _pin_unauth

CLICK_ID_PARAMS = (
    "gclid",
    "fbclid",
    "ttclid",
    "li_fat_id",
    "ScCid",
    "epik",
    "tduid",
    "msclkid",
    "wbraid",
    "gbraid",
    "dclid",
    "twclid",
)
_CLICK_ID_SET = frozenset(CLICK_ID_PARAMS)


class Cookie(NamedTuple):
    """Immutable, and a NamedTuple rather than a frozen dataclass: a first visit mints four, and a
    frozen dataclass's __init__ costs several times more."""

    name: str
    value: str
    max_age: int
    http_only: bool

    def header(self, domain: str | None) -> bytes:
        """The Set-Cookie value, written directly: Django's Morsel formatting was the largest single
        cost of a first visit (bench/). Max-Age alone sets the lifetime, as every current browser reads it."""
        text = f"{self.name}={self.value}; Max-Age={self.max_age}; Path=/; Secure; SameSite=Lax"
        if self.http_only:
            text += "; HttpOnly"
        if domain:
            text += f"; Domain={domain}"
        return text.encode("latin-1")


@dataclass(slots=True)
class Identity:
    """The visitor's IDs for the envelope, and the cookies the response must set."""

    dfid: str
    vendor_ids: dict[str, str]
    new_cookies: list[Cookie] = field(default_factory=list)


_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _uuid4(raw: bytes) -> str:
    """A version-4 UUID string from 16 random bytes (what uuid.uuid4() does, without its object)."""
    b = bytearray(raw)
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _cookie_safe(value: str) -> str:
    # Click IDs come from URLs; keep a cookie value within RFC 6265's octets whatever they hold.
    return value if _SAFE_VALUE_RE.fullmatch(value) else quote(value, safe="-_.~")


_SAFE_VALUE_RE = re.compile(r"[A-Za-z0-9._~-]*")


class _Entropy:
    """os.urandom read 4 KB at a time and handed out in slices: a first visit takes 40 bytes without
    a system call of its own (getrandom was the largest single cost of minting a visitor under
    load). Locked, so two threads never get the same bytes; refilled after a fork, so a child
    process never repeats its parent's."""

    _SIZE = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = b""
        self._used = 0
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._buffer, self._used = b"", 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._used + size > len(self._buffer):
                self._buffer, self._used = os.urandom(max(self._SIZE, size)), 0
            start = self._used
            self._used += size
            return self._buffer[start : self._used]


_entropy = _Entropy()


# The format of each vendor cookie the gateway reads into ``vendorIds``, as the vendors write them and
# as the gateway mints them. A value that does not match (markup, kilobytes, control characters) is
# treated as absent: never copied into an event, and minted anew where the gateway mints that cookie.
_MAX_CLICK_VALUE = 512
_CLICK_VALUE = rf"[A-Za-z0-9._~%-]{{1,{_MAX_CLICK_VALUE}}}"  # a click ID, as _cookie_safe leaves it
VENDOR_COOKIE_FORMATS = {
    "_ga": re.compile(r"GA1\.[1-9]\.\d{1,20}\.\d{1,12}"),
    "_fbp": re.compile(r"fb\.[0-9]\.\d{1,16}\.\d{1,20}"),
    "_fbc": re.compile(rf"fb\.[0-9]\.\d{{1,16}}\.{_CLICK_VALUE}"),
    "_ttp": re.compile(r"[A-Za-z0-9._-]{8,64}"),
    "_gcl_aw": re.compile(rf"GCL\.\d{{1,12}}\.{_CLICK_VALUE}"),
    "_pin_unauth": re.compile(r"[A-Za-z0-9+/=._-]{8,128}"),
    "_scid": re.compile(r"[A-Za-z0-9._-]{8,64}"),
}


def _click_value(click_id: str | None) -> str:
    """A click ID as a cookie may hold it; "" when there is none or it is too long for the format."""
    if not click_id:
        return ""
    value = _cookie_safe(click_id)
    return value if len(value) <= _MAX_CLICK_VALUE else ""


def _vendor_cookie(cookies: Mapping[str, str], name: str) -> str:
    """The visitor's cookie ``name`` if it is in its vendor's format, else ""."""
    value = cookies.get(name, "")
    return value if value and VENDOR_COOKIE_FORMATS[name].fullmatch(value) else ""


def resolve_identity(
    cookies: Mapping[str, str], click_ids: Mapping[str, str], *, now_ms: int, permits: Permits = ALL_PERMITTED
) -> Identity:
    """Read existing cookies (never overwritten) and mint the missing ones that consent permits.

    ``_dfid`` is strictly necessary and always there. The analytics ID (``_ga``) and the advertising
    IDs (``_fbp``, ``_ttp``, ``_pin_unauth``, ``_scid``, ``_fbc``, ``_gcl_aw``) are minted, and read
    into ``vendorIds``, only as ``permits`` says (ingestion.consent): a category the visitor denied
    is neither set nor reported, even from a cookie set before."""
    new: list[Cookie] = []
    now_s = now_ms // 1000
    entropy = _entropy.take(72)  # every random part below

    dfid = cookies.get("_dfid", "")
    if not _UUID_RE.fullmatch(dfid):
        dfid = _uuid4(entropy[:16])
        new.append(Cookie("_dfid", dfid, TWO_YEARS, http_only=True))
    vendor_ids: dict[str, str] = {}

    if permits.analytics:
        ga = _vendor_cookie(cookies, "_ga")
        if not ga:
            ga = f"GA1.1.{int.from_bytes(entropy[16:20]) & 0x7FFFFFFF}.{now_s}"
            new.append(Cookie("_ga", ga, TWO_YEARS, http_only=False))
        vendor_ids["ga"] = ga
    if not permits.advertising:
        return Identity(dfid=dfid, vendor_ids=vendor_ids, new_cookies=new)

    fbp = _vendor_cookie(cookies, "_fbp")
    if not fbp:
        fbp = f"fb.1.{now_ms}.{10**9 + int.from_bytes(entropy[20:24]) % (9 * 10**9)}"
        new.append(Cookie("_fbp", fbp, NINETY_DAYS, http_only=False))
    ttp = _vendor_cookie(cookies, "_ttp")
    if not ttp:
        ttp = _uuid4(entropy[24:40])
        new.append(Cookie("_ttp", ttp, THIRTEEN_MONTHS, http_only=False))
    pin_unauth = _vendor_cookie(cookies, "_pin_unauth")
    if not pin_unauth:
        pin_unauth = _uuid4(entropy[40:56])
        new.append(Cookie("_pin_unauth", pin_unauth, ONE_YEAR, http_only=False))
    scid = _vendor_cookie(cookies, "_scid")
    if not scid:
        scid = _uuid4(entropy[56:72])
        new.append(Cookie("_scid", scid, THIRTEEN_MONTHS, http_only=False))
    vendor_ids.update(fbp=fbp, ttp=ttp, pinUnauth=pin_unauth, scid=scid)

    fbc = _vendor_cookie(cookies, "_fbc")
    fbclid = _click_value(click_ids.get("fbclid"))
    if not fbc and fbclid:
        fbc = f"fb.1.{now_ms}.{fbclid}"
        new.append(Cookie("_fbc", fbc, NINETY_DAYS, http_only=False))
    if fbc:
        vendor_ids["fbc"] = fbc
    gcl_aw = _vendor_cookie(cookies, "_gcl_aw")
    gclid = _click_value(click_ids.get("gclid"))
    if not gcl_aw and gclid:
        gcl_aw = f"GCL.{now_s}.{gclid}"
        new.append(Cookie("_gcl_aw", gcl_aw, NINETY_DAYS, http_only=False))
    if gcl_aw:
        vendor_ids["gclAw"] = gcl_aw
    return Identity(dfid=dfid, vendor_ids=vendor_ids, new_cookies=new)


_CLICK_ID_HINT = re.compile("|".join(CLICK_ID_PARAMS))


def click_ids_from_query(query: str) -> dict[str, str]:
    found: dict[str, str] = {}
    if not _CLICK_ID_HINT.search(query):
        return found  # most page URLs carry none: skip parsing the query
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


def cookie_headers(visitor: Identity, domain: str | None) -> list[tuple[bytes, bytes]]:
    """Set-Cookie lines for the visitor's new cookies (never an existing one: those are not in ``new_cookies``)."""
    return [(b"Set-Cookie", cookie.header(domain)) for cookie in visitor.new_cookies]
