"""Logging filters referenced from settings.LOGGING."""

from __future__ import annotations

import logging


class OneLineWarning(logging.Filter):
    """Turn a record into one line at WARNING: for the client's mistakes that Django logs at ERROR
    with a traceback (a malformed ``Host`` header, which any scanner sends)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
