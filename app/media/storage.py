"""Where photos' bytes are kept: a small interface and its local-directory store.

``PhotoStore`` is what the media service needs: put bytes under a key, read them back, delete
them. Keys are made by the service only (``<brand>/<yyyy>/<mm>/<uuid>.<ext>``) and checked again
here, so no key from outside can name a path: anything but that shape (``..``, an absolute path,
a backslash, a NUL) is refused before the file system is touched, and the resolved path must lie
inside the store's root.

Only ``LocalStore`` exists (``TRACECODE_MEDIA_STORE=local``, ``TRACECODE_MEDIA_DIR``). An
S3-compatible store would be another class with these three methods; it is not written because
no S3 client library is among the project's dependencies (README "Photos").
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Protocol

from app.config import Settings
from app.errors import NotFound, ValidationFailed

KEY = re.compile(r"[1-9][0-9]{0,17}/[0-9]{4}/[0-9]{2}/[0-9a-f]{32}\.(jpg|png|webp)")


class PhotoStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...


def check_key(key: str) -> str:
    """``key`` when it has the one shape the service makes; 400 ``invalid_key`` otherwise."""
    if not KEY.fullmatch(key):
        raise ValidationFailed("not a media key", code="invalid_key")
    return key


class LocalStore:
    """Photos as files under a root directory (written to a temporary name, then renamed, so
    a reader never sees half a file)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):  # belt and braces: the pattern allows no ..
            raise ValidationFailed("not a media key", code="invalid_key")
        return path

    def _put(self, key: str, data: bytes) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        with open(partial, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("photo not found") from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path(key).unlink, True)


def store_from_settings(settings: Settings) -> PhotoStore:
    """The configured store (``TRACECODE_MEDIA_STORE``; ``local`` is the only one)."""
    return LocalStore(settings.media_path)
