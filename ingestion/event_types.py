"""The Segment event types, declared once, and which of them each input takes."""

from __future__ import annotations

TRACK, PAGE, SCREEN, IDENTIFY, GROUP, ALIAS = "track", "page", "screen", "identify", "group", "alias"

# Every type the envelope carries (SPEC §5).
ALL = (TRACK, PAGE, SCREEN, IDENTIFY, GROUP, ALIAS)

# The browser's short paths (/v1/t, …): the path decides the type, as analytics.js posts them.
BROWSER_SHORT_PATHS = {"t": TRACK, "p": PAGE, "i": IDENTIFY, "g": GROUP}

# What a pixel may record (GET /v1/pixel/{type}).
PIXEL = (TRACK, PAGE, IDENTIFY, GROUP)
