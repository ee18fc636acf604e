"""An append-only file with size-based rotation that survives other processes rotating it."""

from __future__ import annotations

import os
from typing import BinaryIO


class RotatingFile:
    """Appends whole chunks; rotates `<path>` to `<path>.1` .. `<path>.N` before overflowing."""

    def __init__(self, path: str, max_bytes: int = 0, backups: int = 3,
                 fsync: bool = False) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self.fsync = fsync
        self._file: BinaryIO | None = None

    def open(self) -> None:
        """Open (or create) the file for appending; raises OSError when that is impossible."""
        self._file = open(self.path, "ab")  # noqa: SIM115 - kept open between batches

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def reopen(self) -> None:
        """Drop the handle (inherited across fork, or pointing at a rotated file) and open anew."""
        self.close()
        self.open()

    def write(self, chunk: bytes) -> None:
        """Append `chunk` in one write call, rotating first when it would not fit."""
        if self._file is None or self._moved():
            self.reopen()
        assert self._file is not None
        if self.max_bytes and self._file.tell() and self._file.tell() + len(chunk) > self.max_bytes:
            self._rotate()
            assert self._file is not None
        self._file.write(chunk)
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def _moved(self) -> bool:
        """True when `path` is no longer the file we hold (another process rotated it)."""
        assert self._file is not None
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return True
        held = os.fstat(self._file.fileno())
        return (on_disk.st_dev, on_disk.st_ino) != (held.st_dev, held.st_ino)

    def _rotate(self) -> None:
        self.close()
        if self.backups == 0:
            open(self.path, "wb").close()
        else:
            for index in range(self.backups - 1, 0, -1):
                source = f"{self.path}.{index}"
                if os.path.exists(source):
                    os.replace(source, f"{self.path}.{index + 1}")
            os.replace(self.path, f"{self.path}.1")
        self.open()
