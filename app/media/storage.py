"""Where photos' bytes are kept: a small interface, its local-directory store and the choice.

``PhotoStore`` is what the media service needs: put bytes under a key, read them back, delete
them. Keys are made by the services only (``<brand>/<yyyy>/<mm>/<uuid>.<ext>``, catalogue media
under ``catalog/``: ``app.media.keys``) and checked again here, so no key from outside can name a
path: anything but that shape (``..``, an absolute path, a backslash, a NUL) is refused before
the file system is touched, and the resolved path must lie inside the store's root.

Two stores: ``LocalStore`` (``TRACECODE_MEDIA_STORE=local``, ``TRACECODE_MEDIA_DIR``) and
``app.media.s3.S3Store`` (``TRACECODE_MEDIA_STORE=s3``, a bucket of an S3-compatible server).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
from pathlib import Path
from typing import Protocol

from app.config import Settings
from app.errors import NotFound, ServiceUnavailable, ValidationFailed
from app.media.keys import check_key


class PhotoStore(Protocol):
    async def put(self, key: str, data: bytes) -> None: ...

    async def get(self, key: str) -> bytes: ...

    async def delete(self, key: str) -> None: ...


class LocalStore:
    """Photos as files under a root directory (written to a temporary name, then renamed, so
    a reader never sees half a file). A write or read the file system refuses (disk full, a
    directory not writable or not a directory) is 503 ``media_store_unavailable``, as an S3
    store that cannot be reached (a probe: a bare ``OSError``, 500 ``internal_error``)."""

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
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
            os.replace(partial, path)
        except OSError:
            with contextlib.suppress(OSError):  # no half file left behind, if it can go
                partial.unlink()
            raise

    async def put(self, key: str, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._put, key, data)
        except OSError as exc:
            raise _unavailable("write", exc) from None

    async def get(self, key: str) -> bytes:
        path = self.path(key)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise NotFound("photo not found") from None
        except OSError as exc:
            raise _unavailable("read", exc) from None

    async def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            await asyncio.to_thread(path.unlink, True)
        except OSError as exc:
            raise _unavailable("delete", exc) from None


def _unavailable(action: str, exc: OSError) -> ServiceUnavailable:
    """The store's error for a file system that refused: its kind, never the path."""
    kind = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
    return ServiceUnavailable(
        f"the photo store cannot {action} its files now ({kind})", code="media_store_unavailable"
    )


@functools.lru_cache(maxsize=8)
def store_from_settings(settings: Settings) -> PhotoStore:
    """The configured store (``TRACECODE_MEDIA_STORE``: ``local`` or ``s3``), made once per
    settings object."""
    if settings.media_store == "s3":
        from app.media.s3 import S3Store

        return S3Store(
            endpoint=settings.media_s3_endpoint or "",
            bucket=settings.media_s3_bucket or "",
            region=settings.media_s3_region,
            access_key_id=settings.media_s3_access_key_id or "",
            secret_access_key=settings.media_s3_secret(),
            prefix=settings.media_s3_prefix,
        )
    return LocalStore(settings.media_path)
