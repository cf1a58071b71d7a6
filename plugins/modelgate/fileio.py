"""Files written whole or not at all: a temporary file beside the target, then `os.replace`.

On any failure (a full disk, a read-only folder) the temporary file is removed and one `WriteFailed` names
what could not be written, where, and why; the target keeps what it held before.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


class WriteFailed(RuntimeError):
    """A file could not be written; nothing half-written was left behind."""


def _failed(what: str, directory: Path, exc: OSError) -> WriteFailed:
    reason = exc.strerror or type(exc).__name__
    hint = "; free space there and retry" if exc.errno in (28, 122) else ""  # ENOSPC, EDQUOT
    return WriteFailed(f"cannot write {what} to {directory}: {reason}{hint}")


def write_atomically(path: Path, data: bytes | Callable[[BinaryIO], None], *, what: str, prefix: str = ".tmp-") -> None:
    """Write `data` (bytes, or a function writing to the open file) to `path`, atomically."""
    directory = path.parent
    tmp: str | None = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, dir=directory)
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, bytes):
                fh.write(data)
            else:
                data(fh)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise _failed(what, directory, exc) from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def copy_atomically(source: Path, path: Path, *, what: str, prefix: str = ".copy-") -> None:
    """Copy the file `source` to `path`, atomically."""

    def copy(fh: BinaryIO) -> None:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)

    write_atomically(path, copy, what=what, prefix=prefix)


def temporary_file(directory: Path, *, what: str, prefix: str, suffix: str = "") -> Path:
    """An empty temporary file in `directory` for a library that writes by name (the caller removes it)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    except OSError as exc:
        raise _failed(what, directory, exc) from None
    os.close(fd)
    return Path(name)
