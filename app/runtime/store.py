"""Content-addressed image store: uploads kept by sha256 in the data directory, written atomically.

At its byte budget the store evicts the oldest unpinned uploads; a pinned image (someone copied an
embed link or built a preset with it, or an operator pinned it) is kept. ``<id>.pin`` marks a pin.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

ID_RE = re.compile(r"^[0-9a-f]{64}$")
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
log = logging.getLogger("resviz.store")


class StoreFullError(RuntimeError):
    """The store has no room for another image (pinned images fill it, or the disk is full)."""


class ImageStore:
    """Stores original upload bytes under ``<data_dir>/images/<sha256>``; evicts the oldest unpinned at the budget."""

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

    def _entries(self) -> list[tuple[float, str, int, bool]]:
        """(stored time, id, bytes, pinned) of every stored image, oldest first."""
        if not self.root.exists():
            return []
        names = {p.name: p for p in self.root.iterdir()}
        out = []
        for name, p in names.items():
            if ID_RE.match(name):
                try:
                    st = p.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime, name, st.st_size, f"{name}.pin" in names))
        return sorted(out)

    def put(self, image_id: str, data: bytes, name: str = "") -> bool:
        """Store ``data`` under its sha256 ``image_id`` (evicting the oldest unpinned); False if already there."""
        path = self._path(image_id)
        with self._lock:
            if path.exists():
                os.utime(path)  # a re-upload counts as new: it is evicted last
                return False
            if len(data) > self.max_bytes:
                raise StoreFullError(
                    f"this image ({len(data):,} bytes) is larger than the whole image store "
                    f"({self.max_bytes:,} bytes, RESVIZ_STORE_MAX_BYTES)"
                )
            self._make_room(len(data))
            try:
                self.root.mkdir(parents=True, exist_ok=True)
                meta = {"name": name[:200], "bytes": len(data), "stored_at": time.time()}
                self._write_atomic(self.root / f"{image_id}.json", json.dumps(meta).encode())
                try:
                    self._write_atomic(path, data)  # the image last: it is what makes the id exist
                except OSError:
                    (self.root / f"{image_id}.json").unlink(missing_ok=True)
                    raise
            except OSError as exc:
                if exc.errno in NO_SPACE:
                    raise StoreFullError(
                        "the server's disk is full: the image could not be stored; an operator can free space "
                        "(`resviz images list`, `resviz images delete ID`) or lower RESVIZ_STORE_MAX_BYTES"
                    ) from None
                raise
            return True

    def _make_room(self, size: int) -> None:
        """Evict the oldest unpinned images until ``size`` more bytes fit the budget; StoreFullError if they cannot."""
        entries = self._entries()
        used = sum(e[2] for e in entries)
        if used + size <= self.max_bytes:
            return
        pinned = sum(e[2] for e in entries if e[3])
        if pinned + size > self.max_bytes:
            raise StoreFullError(
                f"the image store is full of pinned images ({pinned:,} of {self.max_bytes:,} bytes); an operator "
                "can unpin or delete some (`resviz images list`, `resviz images unpin ID`, "
                "`resviz images delete ID`) or raise RESVIZ_STORE_MAX_BYTES"
            )
        for _, image_id, nbytes, is_pinned in entries:
            if used + size <= self.max_bytes:
                break
            if is_pinned:
                continue
            self._remove(image_id)
            used -= nbytes
            log.info("evicted image %s (%d bytes) to make room", image_id[:12], nbytes)

    def _remove(self, image_id: str) -> None:
        (self.root / image_id).unlink(missing_ok=True)
        (self.root / f"{image_id}.json").unlink(missing_ok=True)
        (self.root / f"{image_id}.pin").unlink(missing_ok=True)

    def pin(self, image_id: str) -> bool:
        """Keep ``image_id`` through evictions; False if it was pinned already; KeyError if unknown."""
        path = self._path(image_id)
        with self._lock:
            if not path.exists():
                raise KeyError(f"no stored image with id {image_id}")
            marker = self.root / f"{image_id}.pin"
            if marker.exists():
                return False
            marker.touch()
            return True

    def unpin(self, image_id: str) -> bool:
        """Let ``image_id`` be evicted again; False if it was not pinned; KeyError if unknown."""
        path = self._path(image_id)
        with self._lock:
            if not path.exists():
                raise KeyError(f"no stored image with id {image_id}")
            marker = self.root / f"{image_id}.pin"
            if not marker.exists():
                return False
            marker.unlink()
            return True

    def is_pinned(self, image_id: str) -> bool:
        """Whether ``image_id`` is pinned."""
        return self.exists(image_id) and (self.root / f"{image_id}.pin").exists()

    def stats(self) -> dict:
        """How many images and bytes are stored, and how many of them are pinned."""
        entries = self._entries()
        return {
            "images": len(entries),
            "bytes": sum(e[2] for e in entries),
            "pinned_images": sum(1 for e in entries if e[3]),
            "pinned_bytes": sum(e[2] for e in entries if e[3]),
            "max_bytes": self.max_bytes,
        }

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
                        "pinned": (self.root / f"{p.name}.pin").exists(),
                    }
                )
        return out

    def delete(self, image_id: str) -> None:
        """Remove a stored image; KeyError if unknown."""
        path = self._path(image_id)
        with self._lock:
            if not path.exists():
                raise KeyError(f"no stored image with id {image_id}")
            self._remove(image_id)
