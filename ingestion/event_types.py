"""The Segment event types, declared once, and which of them each input takes."""

from __future__ import annotations

TRACK, PAGE, SCREEN, IDENTIFY, GROUP, ALIAS = "track", "page", "screen", "identify", "group", "alias"

# Every type the envelope carries (SPEC §5).
ALL = (TRACK, PAGE, SCREEN, IDENTIFY, GROUP, ALIAS)

# The browser's short paths (/v1/t, …): the path decides the type, as analytics.js posts them.
BROWSER_SHORT_PATHS = {"t": TRACK, "p": PAGE, "i": IDENTIFY, "g": GROUP, "a": ALIAS, "s": SCREEN}

# analytics-next's batching mode posts {writeKey, batch: [...], sentAt} here; each event names its type.
BROWSER_BATCH_PATH = "b"

# Segment's HTTP Tracking API (/v1/track, …), which RudderStack's browser SDK also posts to: the path
# decides the type, with browser semantics (cookies, CORS).
HTTP_API_PATHS = {kind: kind for kind in (TRACK, PAGE, SCREEN, IDENTIFY, GROUP, ALIAS)}

# What a pixel may record (GET /v1/pixel/{type}).
PIXEL = (TRACK, PAGE, IDENTIFY, GROUP)
