"""Content-addressed image store: uploads kept by sha256 in the data directory, written atomically."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

ID_RE = re.compile(r"^[0-9a-f]{64}$")


class StoreFullError(RuntimeError):
    """The store has no room for another image; nothing was removed to make room."""


class ImageStore:
    """Stores original upload bytes under ``<data_dir>/images/<sha256>``; nothing is evicted silently."""

    def __init__(self, data_dir: Path, max_bytes: int) -> None:
        self.root = Path(data_dir) / "images"
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _path(self, image_id: str) -> Path:
        if not ID_RE.match(image_id or ""):
            raise KeyError(f"not an image id: {image_id[:80]!r} (expected 64 hex characters)")
        return self.root / image_id

    def used_bytes(self) -> int:
        """Bytes taken by stored images."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.iterdir() if ID_RE.match(p.name))

    def put(self, image_id: str, data: bytes, name: str = "") -> bool:
        """Store ``data`` under its sha256 ``image_id``; False if it was already there."""
        path = self._path(image_id)
        with self._lock:
            if path.exists():
                return False
            if self.used_bytes() + len(data) > self.max_bytes:
                raise StoreFullError(
                    f"the image store is full ({self.used_bytes():,} of {self.max_bytes:,} bytes used); "
                    "delete images with `resviz images delete ID` or raise RESVIZ_STORE_MAX_BYTES"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            meta = {"name": name[:200], "bytes": len(data), "stored_at": time.time()}
            self._write_atomic(self.root / f"{image_id}.json", json.dumps(meta).encode())
            try:
                self._write_atomic(path, data)  # the image last: it is what makes the id exist
            except OSError:
                (self.root / f"{image_id}.json").unlink(missing_ok=True)
                raise
            return True

    def _write_atomic(self, path: Path, data: bytes) -> None:
        """Write to a temporary file, flush it to disk, then rename: a crash never leaves half a file at ``path``."""
        tmp = path.parent / f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)  # only left when the write or the rename failed (e.g. the disk is full)

    def get(self, image_id: str) -> bytes:
        """The stored bytes; KeyError if unknown."""
        path = self._path(image_id)
        if not path.exists():
            raise KeyError(f"no stored image with id {image_id}")
        return path.read_bytes()

    def exists(self, image_id: str) -> bool:
        """Whether ``image_id`` is stored."""
        try:
            return self._path(image_id).exists()
        except KeyError:
            return False

    def list(self) -> list[dict]:
        """Every stored image with its size, name and time stored."""
        if not self.root.exists():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if ID_RE.match(p.name):
                meta_path = self.root / f"{p.name}.json"
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, ValueError):
                    meta = {}  # metadata is optional: the image itself is what counts
                out.append(
                    {
                        "id": p.name,
                        "bytes": p.stat().st_size,
                        "name": meta.get("name", ""),
                        "stored_at": meta.get("stored_at"),
                    }
                )
        return out

    def delete(self, image_id: str) -> None:
        """Remove a stored image; KeyError if unknown."""
        path = self._path(image_id)
        with self._lock:
            if not path.exists():
                raise KeyError(f"no stored image with id {image_id}")
            path.unlink()
            (self.root / f"{image_id}.json").unlink(missing_ok=True)
