"""Encryption at rest for signing and webhook secrets (Fernet, with key rotation)."""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted with the current or previous key."""


@lru_cache(maxsize=4)
def _fernet(current: str, previous: str) -> MultiFernet:
    keys = [Fernet(current.encode())]
    if previous:
        keys.append(Fernet(previous.encode()))
    return MultiFernet(keys)


def _keyring() -> MultiFernet:
    return _fernet(settings.ENCRYPTION_KEY, settings.ENCRYPTION_KEY_PREVIOUS)


def encrypt(plaintext: str) -> str:
    return _keyring().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _keyring().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("secret cannot be decrypted with ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS") from exc


def reencrypt(token: str) -> str:
    """The same secret, encrypted under the current key (MultiFernet.rotate)."""
    try:
        return _keyring().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable("secret cannot be decrypted with ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS") from exc
