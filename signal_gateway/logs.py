"""How logging is set up: settings.LOGGING (JSON lines or plain, the request-id filter), applied by
Django at start-up through ``LOGGING_CONFIG``, plus Python's warnings routed through it too, so that
every line the process writes is one JSON object a collector can parse."""

from __future__ import annotations

import logging
import logging.config
from typing import Any


def configure(config: dict[str, Any]) -> None:
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
