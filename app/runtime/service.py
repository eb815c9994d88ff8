"""The analysis service shared by the HTTP API and the CLI: validate, preprocess, run, cache."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from app.runtime import chartstats, explain
from app.runtime import gradients as grad
from app.runtime import shattered as shatter
from app.runtime.admission import FollowUp, Job
from app.runtime.analysis import analyze, complete, feature_map, run_taps, summarize
from app.runtime.cache import LRUCache
from app.runtime.preprocess import prepare, sha256_bytes
from app.runtime.registry import LoadedModel, ModelRegistry, parse_bn, parse_gates

FEATURE_MAP_CHOICES = ("blocks", "all", "none")
SECTIONS = ("all", "summary")
GZIP_LEVEL = 1  # numeric JSON: level 1 is within ~10% of level 5's size at a third of the time


class RequestError(ValueError):
    """Bad request parameters, with a message for the user."""


@dataclass
class Payload:
    """A serialised JSON answer, kept gzipped only: most clients take it so, the rest get it unpacked.

    A cached ResNet-50 analysis is then about 1 MB instead of 4 (plain and gzipped together).
    """

    gzipped: bytes
    size: int  # bytes of the plain JSON

    @classmethod
    def of(cls, obj: Any) -> Payload:
        """Serialise ``obj`` once (numpy arrays natively; NaN and infinity become null) and gzip it."""
        body = orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
        return cls(gzip.compress(body, compresslevel=GZIP_LEVEL), len(body))

    @property
    def body(self) -> bytes:
        """The plain JSON bytes."""
        return gzip.decompress(self.gzipped)

    @property
    def nbytes(self) -> int:
        """Bytes held, for the cache's budget."""
        return len(self.gzipped)

    def json(self) -> Any:
        """The answer parsed back into Python objects."""
        return orjson.loads(self.body)


class AnalysisService:
    """Turns image bytes and request parameters into jobs whose results are JSON payloads.

    Each ``*_job`` method checks a request and returns a ``Job``: the key naming its result and
    the work (decode, graph run, assembly, serialisation). The HTTP API submits jobs to the
    admission gate; the CLI and nested callers run them through ``compute`` (cache, no gate).
    """

    def __init__(
        self,
        registry: ModelRegistry,
        cache_bytes: int,
        max_batch: int,
        max_pixels: int,
        taps_cache_bytes: int = 0,
    ) -> None:
        self.registry = registry
        self.cache = LRUCache(cache_bytes)  # finished payloads
        self.taps_cache = LRUCache(taps_cache_bytes)  # full tap tensors of one image, for feature-map clicks
        self.max_batch = max_batch
        self.max_pixels = max_pixels

    # ------------------------------------------------------------ checks

    def prepare_request(
        self, name: str, weights: str | None, gates: str | None, bn: str | None
    ) -> tuple[LoadedModel, np.ndarray, str]:
        """Validate the model, gates and BN mode of a request."""
        model = self.registry.get(name, weights)
        try:
            return model, parse_gates(gates, model.num_blocks), parse_bn(bn)
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def _check_target(self, model: LoadedModel, target: int | None) -> None:
        try:
            grad.check_target(target, model.manifest["num_classes"])
        except ValueError as exc:
            raise RequestError(str(exc)) from None

    def _check_count(self, blobs: list[bytes]) -> None:
        if not blobs:
            raise RequestError("no image was sent (multipart field 'image' or query 'image_id')")
        if len(blobs) > self.max_batch:
            raise RequestError(f"{len(blobs)} images sent; at most {self.max_batch} per request")

    def images(self, model: LoadedModel, blobs: list[bytes]) -> np.ndarray:
        """Decode and preprocess a batch of images for ``model``."""
        self._check_count(blobs)
        arrays = []
        for i, data in enumerate(blobs):
            try:
                arrays.append(prepare(data, model.manifest["preprocessing"], self.max_pixels)[0])
            except ValueError as exc:
                prefix = f"image {i + 1}: " if len(blobs) > 1 else ""
                raise RequestError(prefix + str(exc)) from None
        return np.stack(arrays)

    # ------------------------------------------------------------ running

    def compute(self, job: Job) -> Any:
        """Run a job here and now, through the cache (the CLI, and work nested inside another job)."""
        if job.key is not None and job.cache:
            hit = self.cache.get(job.key)
            if hit is not None:
                return hit
        result = job.run()
        if isinstance(result, FollowUp):
            result = result.result
        if job.key is not None and job.cache:
            self.cache.put(job.key, result)
        return result

    # ------------------------------------------------------------ jobs

    def analyze_job(
        self,
        name: str,
        blobs: list[bytes],
        *,
        weights: str | None = None,
        gates: str | None = None,
        bn: str | None = None,
        k: int = 8,
        feature_maps: str = "blocks",
        sections: str | None = None,
    ) -> Job:
        """Analysis JSON for ``blobs`` (keyed by image hashes, model, weights, gates, BN mode).

        ``sections="summary"`` answers with what the default view draws as soon as it is ready
        and leaves the rest of the same measurement as a follow-up job, keyed like the whole
        analysis: the page's next request for it shares that work or finds it cached.
        """
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        if feature_maps not in FEATURE_MAP_CHOICES:
            raise RequestError(f"feature_maps must be one of {', '.join(FEATURE_MAP_CHOICES)}")
        if not 1 <= k <= 64:
            raise RequestError("k (feature-map channels per layer) must be between 1 and 64")
        sections = sections or "all"
        if sections not in SECTIONS:
            raise RequestError(f"sections must be one of {', '.join(SECTIONS)}, got {sections[:40]!r}")
        self._check_count(blobs)
        hashes = tuple(sha256_bytes(b) for b in blobs)
        key = ("analyze", hashes, model.key, g.tobytes(), mode, k, feature_maps)
        cost = f"analyze:{name}"

        def run_all() -> Payload:
            result = analyze(self.registry, model, self.images(model, blobs), g, mode, feature_maps=feature_maps, k=k)
            result["input"]["images"] = list(hashes)
            return Payload.of(chartstats.annotate(result))

        if sections == "all":
            return Job(key, run_all, cost=cost)

        def run_summary() -> FollowUp:
            x = self.images(model, blobs)
            doc, measured = summarize(self.registry, model, x, g, mode, full=feature_maps == "all")
            doc["input"]["images"] = list(hashes)
            first = Payload.of(chartstats.annotate(doc))

            def rest() -> Payload:
                return Payload.of(chartstats.annotate(complete(model, doc, measured, g, mode, feature_maps, k)))

            return FollowUp(first, Job(key, rest, cost=f"{cost}:rest"))

        return Job((*key, "summary"), run_summary, cost=f"{cost}:summary")

    def taps(self, name: str, blob: bytes, *, weights: str | None, gates: str | None, bn: str | None) -> dict:
        """Every tap of one image (for full-resolution feature maps), kept in a byte-bounded cache."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        key = ("taps", sha256_bytes(blob), model.key, g.tobytes(), mode)
        hit = self.taps_cache.get(key)
        if hit is None:
            hit = run_taps(self.registry, model, self.images(model, [blob]), g, mode)
            self.taps_cache.put(key, hit)
        return hit

    def featuremap_job(
        self, name: str, blob: bytes, *, tap: str, channel: int, weights: str | None, gates: str | None, bn: str | None
    ) -> Job:
        """One channel of one tap at full resolution (the payload is cached, the tensors only briefly)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        shapes = {t["id"]: t["shape"] for t in model.manifest["taps"]}
        if tap not in shapes:
            raise RequestError(f"unknown tap {tap[:60]!r} for {name}")
        if not 0 <= channel < shapes[tap][0]:
            raise RequestError(f"channel must be in [0, {shapes[tap][0] - 1}] for {tap}")
        digest = sha256_bytes(blob)
        key = ("fmap", digest, model.key, g.tobytes(), mode, tap, channel)

        def run() -> Payload:
            taps = self.taps(name, blob, weights=weights, gates=gates, bn=bn)
            fm = feature_map(taps, tap, channel)
            return Payload.of({**fm, "summary": chartstats.channel_summary(fm["values"]), "image_sha256": digest})

        return Job(key, run, cost=f"taps:{name}")

    def gradients_job(
        self,
        name: str,
        blobs: list[bytes],
        *,
        weights: str | None,
        gates: str | None,
        bn: str | None,
        target: int | None,
    ) -> Job:
        """Gradient-norm JSON for ``blobs`` (keyed like analyses, plus the target)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        self._check_target(model, target)
        self._check_count(blobs)
        hashes = [sha256_bytes(b) for b in blobs]
        key = ("grad", tuple(hashes), model.key, g.tobytes(), mode, target)

        def run() -> Payload:
            result = grad.gradients(self.registry, model, self.images(model, blobs), g, mode, target)
            result["images"] = hashes
            return Payload.of({**result, "spread": chartstats.gradient_spread(result["blocks"])})

        return Job(key, run, cost=f"grad:{name}")

    def normalizations_job(
        self,
        name: str,
        blob: bytes,
        *,
        weights: str | None,
        gates: str | None,
        layer: str | None,
        groups: int | None,
    ) -> Job:
        """Batch, layer, instance, group and local response norm of one conv layer's real output, side by side.

        The batch is the uploaded image followed by the built-in samples of the model's input size (so
        batch statistics differ from one image's); the conv output comes from the tap graph with BN on
        running statistics upstream. The answer reports the uploaded image (index 0).
        """
        from app.runtime import normalizations as norms
        from app.runtime.samples import sample_bytes, samples_of_size

        model, g, _ = self.prepare_request(name, weights, gates, "running")
        man = model.manifest
        by_input = {b["input"]: b for b in man["batchnorm"]}
        if not by_input:
            raise RequestError(f"{name} has no batch-norm layers to compare")
        first = f"{man['blocks'][0]['id']}.conv1" if man["blocks"] else next(iter(by_input))
        layer = layer or (first if first in by_input else next(iter(by_input)))
        layer = {b["id"]: b["input"] for b in man["batchnorm"]}.get(layer, layer)  # a BN's id: the conv it normalises
        if layer not in by_input:
            shown = ", ".join(list(by_input)[:6])
            raise RequestError(
                f"layer must be a conv layer followed by a batch norm (or that batch norm), e.g. {shown}, ...; "
                f"got {layer[:60]!r}"
            )
        channels = next(t["shape"][0] for t in man["taps"] if t["id"] == layer)
        groups = norms.default_groups(channels) if groups is None else groups
        if not 1 <= groups <= channels or channels % groups:
            divisors = [d for d in range(1, channels + 1) if channels % d == 0]
            raise RequestError(
                f"groups must divide the {channels} channels of {layer} (one of {', '.join(map(str, divisors))}), "
                f"got {groups}"
            )
        digest = sha256_bytes(blob)
        names = [s for s in samples_of_size(man["input_size"]) if sha256_bytes(sample_bytes(s)) != digest]
        key = ("norms", digest, model.key, g.tobytes(), layer, groups, tuple(names))

        def run() -> Payload:
            x = self.images(model, [blob])  # the uploaded image first, then the samples
            if names:
                rest = np.stack([prepare(sample_bytes(s), man["preprocessing"], self.max_pixels)[0] for s in names])
                x = np.concatenate([x, rest])
            sess = self.registry.session(model, "running")
            (out,) = sess.run([layer], {"image": x, "gates": g})
            bn = by_input[layer]
            result = norms.compare(out, groups, bn)
            result.update(
                model=name,
                weights=model.variant,
                layer=layer,
                bn_layer=bn["id"],
                layers=list(by_input),
                image_sha256=digest,
                batch={"images": int(x.shape[0]), "uploaded_index": 0, "samples": names},
                upstream_bn="running",
            )
            return Payload.of(result)

        return Job(key, run, cost=f"norms:{name}")

    def explain_job(
        self,
        name: str,
        blob: bytes,
        *,
        weights: str | None = None,
        gates: str | None = None,
        bn: str | None = None,
        target: int | None = None,
        method: str | None = None,
        layer: str | None = None,
        samples: int = explain.SAMPLES[2],
        steps: int = explain.STEPS[2],
        overlays: bool = True,
    ) -> Job:
        """Class activation or saliency map JSON for one image (keyed by what changes the answer)."""
        model, g, mode = self.prepare_request(name, weights, gates, bn)
        method = method or explain.CAM_METHODS[0]
        try:
            used, _ = explain.check(model.manifest, method, layer, target, mode, samples, steps)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        sha = sha256_bytes(blob)
        key = (
            "explain",
            sha,
            model.key,
            g.tobytes(),
            mode,
            target,
            method,
            layer,
            samples if method == "smoothgrad" else None,
            steps if method == "ig" else None,
            overlays or used != explain.ALL,
        )

        def run() -> Payload:
            options = {"samples": samples, "steps": steps, "overlays": overlays}
            result = explain.explain(
                self.registry, model, self.images(model, [blob]), g, mode, target, method, layer, **options
            )
            return Payload.of({**result, "image": sha})

        return Job(key, run, cost=f"explain:{name}:{method}")

    def lesion_job(self, name: str, blob: bytes, *, weights: str | None, gates: str | None, target: int | None) -> Job:
        """Lesion-study JSON for one image."""
        model, g, _ = self.prepare_request(name, weights, gates, "running")
        self._check_target(model, target)
        key = ("lesion", sha256_bytes(blob), model.key, g.tobytes(), target)

        def run() -> Payload:
            return Payload.of(grad.lesion(self.registry, model, self.images(model, [blob]), g, target))

        return Job(key, run, cost=f"lesion:{name}")

    def shattered_job(
        self,
        name: str,
        blob: bytes,
        *,
        weights: str | None,
        gates: str | None,
        target: int | None,
        points: int = shatter.POINTS,
        seed: int = 0,
    ) -> Job:
        """Shattered-gradients JSON for one image: d(class score)/dx along a line of inputs, its spectrum."""
        try:
            shatter.check_request(name, points, seed)
        except ValueError as exc:
            raise RequestError(str(exc)) from None
        model, g, _ = self.prepare_request(name, weights, gates, "running")
        self._check_target(model, target)
        digest = sha256_bytes(blob)
        key = ("shattered", digest, model.key, g.tobytes(), target, points, seed)

        def run() -> Payload:
            x = self.images(model, [blob])
            result = shatter.shattered(self.registry, model, x, g, target, points=points, seed=seed)
            return Payload.of({**result, "image_sha256": digest})

        return Job(key, run, cost=f"shattered:{name}")

    def depth_sweep_job(
        self, blob: bytes, *, weights: str, bn: str | None, depths: tuple[int, ...] | None = None
    ) -> Job:
        """First-layer gradient norm against depth, residual and plain (rows cached one depth at a time).

        A row comes from the shipped precomputed file while its weights and export format still
        match (the probe image), else from the gradient graphs; either way it is cached by itself.
        """
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
        chosen = tuple(dict.fromkeys(depths))
        variants = {d: tuple(self.registry.variants(f"resnet{d}")) for d in chosen}  # new weights: new rows

        def run() -> Payload:
            rows, sources = [], set()
            for depth in chosen:
                key = ("sweep-row", sha, weights, mode, depth, variants[depth])
                row = self.cache.get(key)
                if row is None:
                    row = sweeps.precomputed_row(sha, weights, mode, depth, list(variants[depth]))
                    if row is None:
                        row = grad.sweep_row(self.registry, depth, blob, weights, mode, self.images)
                        row = {**sweeps.with_fingerprints(row), "source": "computed"}
                    else:
                        row = {**row, "source": "precomputed"}
                    self.cache.put(key, row)
                rows.append(row)
                sources.add(row.get("source", "computed"))
            return Payload.of(grad.sweep_payload(rows, weights, mode, "+".join(sorted(sources))))

        return Job(("sweep", sha, weights, mode, chosen, tuple(variants.values())), run, cost=f"sweep:{len(chosen)}")

    # ------------------------------------------------------------ synchronous forms (CLI, nested work)

    def analyze(self, name: str, blobs: list[bytes], **options: Any) -> Payload:
        """``analyze_job`` run here (cached)."""
        return self.compute(self.analyze_job(name, blobs, **options))

    def gradients(self, name: str, blobs: list[bytes], **options: Any) -> Payload:
        """``gradients_job`` run here (cached)."""
        return self.compute(self.gradients_job(name, blobs, **options))

    def explain(self, name: str, blob: bytes, **options: Any) -> Payload:
        """``explain_job`` run here (cached)."""
        return self.compute(self.explain_job(name, blob, **options))

    def lesion(self, name: str, blob: bytes, **options: Any) -> Payload:
        """``lesion_job`` run here (cached)."""
        return self.compute(self.lesion_job(name, blob, **options))

    def shattered(self, name: str, blob: bytes, **options: Any) -> Payload:
        """``shattered_job`` run here (cached)."""
        return self.compute(self.shattered_job(name, blob, **options))

    def depth_sweep(self, blob: bytes, **options: Any) -> Payload:
        """``depth_sweep_job`` run here (cached)."""
        return self.compute(self.depth_sweep_job(blob, **options))
