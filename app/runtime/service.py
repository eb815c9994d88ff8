"""The analysis service shared by the HTTP API and the CLI: validate, preprocess, run, cache."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

import numpy as np

from app.runtime import gradients as grad
from app.runtime.analysis import analyze, run_taps
from app.runtime.cache import LRUCache
from app.runtime.preprocess import prepare, sha256_bytes
from app.runtime.registry import LoadedModel, ModelRegistry, parse_bn, parse_gates

FEATURE_MAP_CHOICES = ("blocks", "all", "none")


class RequestError(ValueError):
    """Bad request parameters, with a message for the user."""


@dataclass
class Payload:
    """A serialised JSON answer, kept with its gzip form for cached replies."""

    body: bytes
    gzipped: bytes

    @classmethod
    def of(cls, obj: dict) -> Payload:
        """Serialise ``obj`` once, in both plain and gzip form."""
        body = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        return cls(body, gzip.compress(body, compresslevel=5))


class AnalysisService:
    """Turns image bytes and request parameters into analysis JSON, with an LRU cache."""

    def __init__(self, registry: ModelRegistry, cache_entries: int, max_batch: int, max_pixels: int) -> None:
        self.registry = registry
        self.cache = LRUCache(cache_entries)
        self.max_batch = max_batch
        self.max_pixels = max_pixels

    def prepare_request(
        self, name: str, weights: str | None, gates: str | None, bn: str | None
    ) -> tuple[LoadedModel, np.ndarray, str]:
        """Validate the model, gates and BN mode of a request."""
        model = self.registry.get(name, weights)
        try:
            return model, parse_gates(gates, model.num_blocks), parse_bn(bn)
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def images(self, model: LoadedModel, blobs: list[bytes]) -> np.ndarray:
        """Decode and preprocess a batch of images for ``model``."""
        if not blobs:
            raise RequestError("no image was sent (multipart field 'image')")
        if len(blobs) > self.max_batch:
            raise RequestError(f"{len(blobs)} images sent; at most {self.max_batch} per request")
        arrays = []
        for i, data in enumerate(blobs):
            try:
                arrays.append(prepare(data, model.manifest["preprocessing"], self.max_pixels)[0])
            except ValueError as exc:
                prefix = f"image {i + 1}: " if len(blobs) > 1 else ""
                raise RequestError(prefix + str(exc)) from None
        return np.stack(arrays)

    def analyze(
        self,
        name: str,
        blobs: list[bytes],
        *,
        weights: str | None = None,
        gates: str | None = None,
        bn: str | None = None,
        k: int = 8,
        feature_maps: str = "blocks",
    ) -> Payload:
        """Analysis JSON for ``blobs`` (cached by image hashes, model, weights, gates, BN mode)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        if feature_maps not in FEATURE_MAP_CHOICES:
            raise RequestError(f"feature_maps must be one of {', '.join(FEATURE_MAP_CHOICES)}")
        if not 1 <= k <= 64:
            raise RequestError("k (feature-map channels per layer) must be between 1 and 64")
        key = ("analyze", tuple(sha256_bytes(b) for b in blobs), model.key, g.tobytes(), mode, k, feature_maps)
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        x = self.images(model, blobs)
        result = analyze(self.registry, model, x, g, mode, feature_maps=feature_maps, k=k)
        result["input"]["images"] = [sha256_bytes(b) for b in blobs]
        payload = Payload.of(result)
        self.cache.put(key, payload)
        return payload

    def taps(self, name: str, blob: bytes, *, weights: str | None, gates: str | None, bn: str | None) -> dict:
        """Every tap of one image (for full-resolution feature maps)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        key = ("taps", sha256_bytes(blob), model.key, g.tobytes(), mode)
        hit = self.cache.get(key)
        if hit is None:
            hit = run_taps(self.registry, model, self.images(model, [blob]), g, mode)
            self.cache.put(key, hit)
        return hit

    def gradients(
        self,
        name: str,
        blobs: list[bytes],
        *,
        weights: str | None,
        gates: str | None,
        bn: str | None,
        target: int | None,
    ) -> Payload:
        """Gradient-norm JSON for ``blobs`` (cached like analyses)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        try:
            grad.check_target(target, model.manifest["num_classes"])
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        key = ("grad", tuple(sha256_bytes(b) for b in blobs), model.key, g.tobytes(), mode, target)
        hit = self.cache.get(key)
        if hit is None:
            result = grad.gradients(self.registry, model, self.images(model, blobs), g, mode, target)
            result["images"] = [sha256_bytes(b) for b in blobs]
            hit = Payload.of(result)
            self.cache.put(key, hit)
        return hit

    def lesion(self, name: str, blob: bytes, *, weights: str | None, gates: str | None, target: int | None) -> Payload:
        """Lesion-study JSON for one image."""
        model, g, _ = self.prepare_request(name, weights, gates, "running")
        try:
            grad.check_target(target, model.manifest["num_classes"])
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        key = ("lesion", sha256_bytes(blob), model.key, g.tobytes(), target)
        hit = self.cache.get(key)
        if hit is None:
            hit = Payload.of(grad.lesion(self.registry, model, self.images(model, [blob]), g, target))
            self.cache.put(key, hit)
        return hit

    def depth_sweep(
        self, blob: bytes, *, weights: str, bn: str | None, depths: tuple[int, ...] | None = None
    ) -> Payload:
        """First-layer gradient norm against depth, residual and plain (rows cached one depth at a time)."""
        from app.runtime import sweeps

        try:
            mode = parse_bn(bn)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        if weights not in ("init", "trained"):
            raise RequestError("weights for the depth sweep must be 'init' or 'trained'")
        depths = grad.SWEEP_DEPTHS if depths is None else depths
        bad = [d for d in depths if d not in grad.SWEEP_DEPTHS]
        if bad or not depths:
            raise RequestError(f"depths must be some of {', '.join(map(str, grad.SWEEP_DEPTHS))}, got {bad or 'none'}")
        sha = sha256_bytes(blob)
        rows, sources = [], set()
        for depth in dict.fromkeys(depths):
            variants = self.registry.variants(f"resnet{depth}")  # new weights make a new row
            key = ("sweep-row", sha, weights, mode, depth, tuple(variants))
            row = self.cache.get(key)
            if row is None:
                row = sweeps.precomputed_row(sha, weights, mode, depth, variants)
                if row is None:
                    row = grad.sweep_row(self.registry, depth, blob, weights, mode, self.images)
                    row = {**sweeps.with_fingerprints(row), "source": "computed"}
                else:
                    row = {**row, "source": "precomputed"}
                self.cache.put(key, row)
            rows.append(row)
            sources.add(row.get("source", "computed"))
        return Payload.of(grad.sweep_payload(rows, weights, mode, "+".join(sorted(sources))))
