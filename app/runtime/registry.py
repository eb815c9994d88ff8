"""One ONNX Runtime session per (model, weights, graph), opened lazily and shared."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from app import manifest as manifests
from app.config import cpu_count
from app.manifest import Manifest
from app.paths import (
    GRAPH_FILES,
    SERVING_GRAPHS,
    available_variants,
    manifest_path,
)
from app.runtime.export_jobs import cannot_export_message, torch_available
from app.specs import BN_MODES, SPECS

if TYPE_CHECKING:
    from app.runtime.exports import ExportQueue

log = logging.getLogger("resviz.registry")


class UnknownModelError(KeyError):
    """A model or weights name the registry does not know."""

    def __str__(self) -> str:
        return str(self.args[0])


class ExportError(RuntimeError):
    """Exporting a model's graphs failed."""


CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The CUDA provider's options. The heuristic picks a convolution algorithm at once instead of timing every
# one on each new input shape (every model and batch size is one); TF32 off keeps the numbers within 1e-3
# of the CPU's (the views compare small statistics; bench/gpu_check.py checks it).
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC", "use_tf32": "0"}


def choose_providers(setting: str) -> list[str]:
    """Execution providers: CUDA first where onnxruntime has it, then CPU."""
    have = ort.get_available_providers()
    if setting != "auto":
        wanted = [p.strip() for p in setting.split(",") if p.strip()]
        return [p for p in wanted if p in have] or [CPU]
    chosen = [p for p in (CUDA, CPU) if p in have]
    if CUDA not in chosen and _both_runtimes_installed():
        log.warning(
            "onnxruntime and onnxruntime-gpu are both installed and the CPU one won: no CUDA provider. "
            "Keep one: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    return chosen


def _both_runtimes_installed() -> bool:
    from importlib import metadata

    def installed(dist: str) -> bool:
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            return False
        return True

    return installed("onnxruntime") and installed("onnxruntime-gpu")


@dataclass
class LoadedModel:
    """A model's manifest and its sessions, opened on first use."""

    name: str
    variant: str
    directory: Path
    manifest: Manifest
    sessions: dict[str, ort.InferenceSession] = field(default_factory=dict)
    cache: dict[str, object] = field(default_factory=dict)  # per-model constants derived once

    @property
    def key(self) -> str:
        """``name@weights``: the model with one set of weights."""
        return f"{self.name}@{self.variant}"

    @property
    def num_blocks(self) -> int:
        """Length of the gate vector."""
        return int(self.manifest["blocks"].__len__())


def _mtime(path: Path) -> int:
    """A folder's modification time in ns (-1 when it does not exist)."""
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


class ModelRegistry:
    """Opens manifests and sessions on demand; exports missing graphs in a subprocess."""

    def __init__(
        self,
        models_dir: Path,
        providers: str = "auto",
        intra_op_threads: int = 0,
        exporter: ExportQueue | None = None,
        export_timeout_s: float | None = None,
        wide_layer_macs: float = 0.0,
        cores: int = 0,
    ) -> None:
        self.models_dir = Path(models_dir)
        # With an export queue (the server), a missing graph is queued and ExportPending raised;
        # without one (the CLI), it is exported here, in a subprocess, before returning.
        self.exporter = exporter
        self.export_timeout_s = export_timeout_s
        self.providers = choose_providers(providers)
        self.intra_op_threads = intra_op_threads
        self.wide_layer_macs = wide_layer_macs  # models of layers this big get a thread per core (0: none)
        self.cores = cores  # the cores this server may use (RESVIZ_CPUS: a replica's slice); 0: the affinity mask
        self._models: dict[str, LoadedModel] = {}
        self._variants: dict[str, tuple[tuple[int, int], list[str]]] = {}
        self._lock = threading.RLock()  # creating sessions concurrently is not safe
        self._export_locks: dict[str, threading.Lock] = {}

    def warm(self, names: tuple[str, ...], kinds: tuple[str, ...] = ("stats-running",)) -> list[str]:
        """Open the sessions of ``kinds`` for the default weights of ``names`` where they are exported.

        Opening a session optimises its graph (a second or more for ResNet-50); done at start-up, the
        first students of a lecture do not wait for it. Returns ``name@weights:kind`` of what was opened.
        """
        opened = []
        for name in names:
            try:
                if not self.is_exported(name, None, kinds):
                    continue  # the export worker has it; it opens on first use
                model = self.get(name, None)
                for kind in kinds:
                    self.session(model, kind)
                    opened.append(f"{model.key}:{kind}")
            except Exception as exc:  # noqa: BLE001 - warming is an optimisation; a real request reports errors
                log.warning("could not warm %s: %s", name, exc)
        return opened

    def loaded(self) -> list[str]:
        """``name@weights`` of every model opened so far."""
        with self._lock:
            return sorted(self._models)

    def names(self) -> list[str]:
        """Every model of the family."""
        return list(SPECS)

    def check_name(self, name: str) -> None:
        """Raise UnknownModelError with the known names if ``name`` is not a model."""
        if name not in SPECS:
            raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(SPECS)}")

    def variants(self, name: str) -> list[str]:
        """Weights one can use with ``name``, default first (listed again only when its folders change)."""
        self.check_name(name)
        # Importing weights adds a file to imported/, a new export a folder to <name>/: both change their
        # folder's modification time, the key of the cached list. Two stat calls instead of two globs.
        key = (_mtime(self.models_dir / "imported"), _mtime(self.models_dir / name))
        hit = self._variants.get(name)
        if hit is None or hit[0] != key:
            hit = (key, available_variants(self.models_dir, name))
            self._variants[name] = hit
        return hit[1]

    def resolve_variant(self, name: str, weights: str | None) -> str:
        """The weights variant to use, checking that it exists."""
        self.check_name(name)
        if weights in (None, "", "default"):
            return self.variants(name)[0]
        if weights not in self.variants(name):
            raise UnknownModelError(
                f"unknown weights {weights!r} for {name}; available: {', '.join(self.variants(name))}"
            )
        return weights

    def is_exported(self, name: str, weights: str | None = None, kinds: tuple[str, ...] = ("running",)) -> bool:
        """Whether the manifest and the given graphs exist on disk."""
        variant = self.resolve_variant(name, weights)
        return manifests.is_current(self.models_dir, name, variant) and set(kinds) <= manifests.exported_kinds(
            self.models_dir, name, variant
        )

    def export(self, name: str, weights: str | None = None, kinds: tuple[str, ...] | None = None) -> None:
        """Export graphs in a separate process, so this process never imports torch.

        With an export queue the graphs are queued instead and ExportPending (or NotExportedError) raised.
        """
        variant = self.resolve_variant(name, weights)
        key = f"{name}@{variant}"
        if self.exporter is not None:
            self.exporter.require(name, variant, tuple(kinds or SERVING_GRAPHS))
            return
        if not torch_available():
            raise ExportError(cannot_export_message(self.models_dir, name, variant))
        with self._lock:
            lock = self._export_locks.setdefault(key, threading.Lock())
        with lock:
            if kinds is not None and self.is_exported(name, variant, kinds):
                return
            cmd = [sys.executable, "-m", "app.cli", "--models-dir", str(self.models_dir), "export", name]
            cmd += ["--weights", variant, "--quiet"]
            if kinds:
                cmd += ["--graphs", ",".join(kinds)]
            log.info("exporting %s in a subprocess: %s", key, " ".join(cmd))
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.export_timeout_s)
            except subprocess.TimeoutExpired:
                raise ExportError(f"export of {key} took longer than {self.export_timeout_s:.0f} s") from None
            if proc.returncode != 0:
                raise ExportError(f"export of {key} failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
            with self._lock:
                self._models.pop(key, None)

    def get(self, name: str, weights: str | None = None) -> LoadedModel:
        """The loaded model, exporting it first if its manifest is missing."""
        variant = self.resolve_variant(name, weights)
        key = f"{name}@{variant}"
        with self._lock:
            if key in self._models:
                return self._models[key]
        mpath = manifest_path(self.models_dir, name, variant)
        if not self.is_exported(name, variant, ()):
            self.export(name, variant, ("running",))
        with self._lock:
            if key not in self._models:
                manifest = manifests.load(mpath)
                if manifest is None:  # replaced by an export in another format between the two looks
                    raise ExportError(f"the manifest of {key} changed while it was read; ask again")
                self._models[key] = LoadedModel(name, variant, mpath.parent, manifest)
            return self._models[key]

    def threads(self, model: LoadedModel) -> int:
        """ORT intra-op threads for ``model``'s sessions: one per core for big layers, else the configured count."""
        man = model.manifest
        if self.wide_layer_macs and man["macs"] / max(1, man["depth"]) >= self.wide_layer_macs:
            return self.cores or cpu_count()
        return self.intra_op_threads

    def session(self, model: LoadedModel, kind: str) -> ort.InferenceSession:
        """The session of one graph of ``model`` (``running``, ``batch``, ``grad-running`` ...)."""
        if kind not in GRAPH_FILES:
            raise ValueError(f"unknown graph kind {kind!r}")
        sess = model.sessions.get(kind)
        if sess is not None:
            return sess
        path = model.directory / GRAPH_FILES[kind]
        if not manifests.graph_current(model.directory, model.manifest, kind):
            self.export(model.name, model.variant, (kind,))
            model.manifest = manifests.load(model.directory / "manifest.json") or model.manifest
        with self._lock:
            if kind not in model.sessions:
                model.sessions[kind] = self.open_session(path, self.threads(model))
            return model.sessions[kind]

    def session_options(self, threads: int | None = None) -> ort.SessionOptions:
        """The options of every session this registry opens (``threads``: intra-op threads, else the configured)."""
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        threads = self.intra_op_threads if threads is None else threads
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        # ORT's workers must not spin after a run: numpy's statistics threads need the cores then.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return opts

    def provider_config(self) -> list:
        """``providers`` for ``InferenceSession``: the chosen ones in order, CUDA with its options."""
        return [(p, dict(CUDA_OPTIONS)) if p == CUDA else p for p in self.providers]

    def open_session(self, path: Path, threads: int | None = None) -> ort.InferenceSession:
        """One ONNX Runtime session on the chosen providers (CUDA first where there is one, then CPU)."""
        opts = self.session_options(threads)
        try:
            sess = ort.InferenceSession(str(path), opts, providers=self.provider_config())
        except Exception as exc:  # noqa: BLE001 - a provider option this onnxruntime does not know: plain providers
            if CUDA not in self.providers:
                raise
            log.warning("CUDA session options refused (%s); opening %s with the provider's defaults", exc, path.name)
            sess = ort.InferenceSession(str(path), self.session_options(threads), providers=self.providers)
        if CUDA in self.providers and CUDA not in sess.get_providers():
            # onnxruntime-gpu without a GPU, or without the CUDA / cuDNN libraries it was built for: it runs on
            # the CPU. Say so once, report the truth in /readyz, and stop asking for CUDA.
            log.warning("the CUDA provider could not start (no GPU, or CUDA / cuDNN libraries missing): using the CPU")
            self.providers = [p for p in self.providers if p != CUDA] or [CPU]
        return sess


def parse_gates(text: str | None, num_blocks: int) -> np.ndarray:
    """Gate vector from ``all-on``, ``all-off`` or a comma list of numbers in [0, 1]."""
    if text is None or text.strip() in ("", "all-on"):
        return np.ones(num_blocks, np.float32)
    text = text.strip()
    if text == "all-off":
        return np.zeros(num_blocks, np.float32)
    parts = [p.strip() for p in text.split(",")]
    try:
        values = np.array([float(p) for p in parts], np.float64)
    except ValueError:
        raise ValueError(
            f"gates must be 'all-on', 'all-off' or {num_blocks} comma-separated numbers in [0, 1]; "
            f"could not read {text[:60]!r}"
        ) from None
    if values.size != num_blocks:
        raise ValueError(f"gates has {values.size} values but this model has {num_blocks} blocks")
    if not np.all(np.isfinite(values)):
        raise ValueError("gates must be finite numbers (no NaN or infinity)")
    if np.any(values < 0) or np.any(values > 1):
        raise ValueError("every gate must lie in [0, 1]")
    return values.astype(np.float32)


def parse_bn(text: str | None) -> str:
    """BN mode from a request: ``running`` (default) or ``batch``."""
    mode = (text or "running").strip()
    if mode not in BN_MODES:
        raise ValueError(f"bn must be one of {', '.join(BN_MODES)}, got {mode!r}")
    return mode
