"""Writing a posting file: owner-only (0600), complete or not at all, never over another.

The text goes to a temporary file beside the target, opened 0600 with ``O_EXCL``, is
flushed to disk, then linked to the target name (``os.link`` fails if the name exists:
a file the billing system may already have taken is never replaced). A reader sees no
file or the whole file, never half of one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["PostingFileError", "write_private"]

MODE = 0o600


class PostingFileError(OSError):
    """The posting file could not be written; the message says why (no content)."""


def write_private(path: Path, text: str) -> None:
    if path.exists():
        raise PostingFileError(f"{path} already exists: posting files are never overwritten")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    except OSError as exc:
        raise PostingFileError(f"cannot write in {path.parent}: {exc.strerror}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise PostingFileError(f"{path} already exists: posting files are never overwritten") from None
        _sync_directory(path.parent)
    except OSError as exc:
        if isinstance(exc, PostingFileError):
            raise
        raise PostingFileError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def _sync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
