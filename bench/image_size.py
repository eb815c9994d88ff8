"""What the Docker image's runtime stage holds: its installed packages with their sizes, the models, the total.

    python bench/image_size.py                        # models measured in models/ (the repo's export cache)
    python bench/image_size.py --models-dir /path/to/models --extras cluster

No container engine is needed: the runtime stage is rebuilt as a venv the same way (the wheel built from
a copy of the sources, then ``pip install`` of that wheel alone, as the Dockerfile's runtime stage does;
pip's cache is reused), every installed distribution is measured from its RECORD, and the serving graphs
of the image's export list (``IMAGE_EXPORTS``, the Dockerfile's build stage) are measured in
``--models-dir`` (each model's graphs with the weights file they share, as its manifest lists them). A
variant not exported there counts at the size of the same model's other weights (same architecture, same
bytes). The base image (python:3.11-slim) is not measured here: its size is a constant.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.manifest import export_files  # noqa: E402
from app.paths import DEFAULT_MODELS_DIR, WEIGHTS_FILE_GLOB  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SOURCES = ("app", "static", "templates", "models/weights", "pyproject.toml", "setup.py", "README.md")
BASE_IMAGE = "python:3.11-slim"
TARGET_MB = 700  # the image size aimed at (issue 18)
BASE_IMAGE_MB = 130  # python:3.11-slim (Debian bookworm) unpacked, as `docker images` lists it; pip included
IN_BASE_IMAGE = {"pip", "setuptools", "wheel"}  # there already: not counted twice
# (model, weights) the Dockerfile's build stage exports (every serving graph of each): keep in step with it.
IMAGE_EXPORTS = [
    *[(m, "trained") for m in ("resnet20", "resnet56", "resnet110")],  # --defaults: the CIFAR defaults
    *[(m, "init") for m in ("resnet18", "resnet50")],  # --defaults: the ImageNet defaults (He init)
    *[(m, "plain") for m in ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")],  # lab, depth sweep
    *[(m, "trained") for m in ("resnet32", "resnet44")],  # the depth sweep's residual rows
]
PROBE = """
import json, sys
from importlib import metadata
rows = []
for dist in metadata.distributions():
    size = 0
    for f in dist.files or []:
        p = f.locate()
        try:
            size += p.stat().st_size if p.is_file() else 0
        except OSError:
            pass
    rows.append({"name": dist.metadata["Name"], "version": dist.version, "bytes": size})
json.dump(rows, sys.stdout)
"""


def build_runtime_venv(work: Path, extras: str) -> Path:
    """The wheel from a copy of the sources, installed into a fresh venv without extras (or with ``extras``)."""
    src = work / "src"
    for rel in SOURCES:
        a, b = ROOT / rel, src / rel
        if a.is_dir():
            shutil.copytree(a, b, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            b.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(a, b)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(src)], check=True
    )
    wheel = next((work / "dist").glob("resviz-*.whl"))
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", target], check=True)
    return venv


def packages(venv: Path) -> list[dict]:
    """Installed distributions of ``venv`` with the bytes of their files, largest first."""
    probe = [str(venv / "bin" / "python"), "-I", "-c", PROBE]  # isolated: nothing from the working directory
    out = subprocess.run(probe, check=True, capture_output=True, text=True, cwd=venv)
    rows = json.loads(out.stdout)
    return sorted(rows, key=lambda r: -r["bytes"])


def graphs_bytes(models_dir: Path, name: str, variant: str) -> tuple[int, int, str]:
    """Bytes of a model's export (graphs, the weights file they share, manifest), of that file, and where measured."""

    def measure(v: str) -> tuple[int, int] | None:
        files = export_files(models_dir, name, v)
        if not files:
            return None
        weights = sum(f.stat().st_size for f in files if f.match(WEIGHTS_FILE_GLOB))
        return sum(f.stat().st_size for f in files), weights

    size = measure(variant)
    if size is not None:
        return *size, f"{name}/{variant}"
    for other in sorted(p.name for p in (models_dir / name).glob("*") if p.is_dir()):
        size = measure(other)
        if size is not None:
            return *size, f"{name}/{other} (same architecture)"
    raise SystemExit(f"no complete export of {name} in {models_dir}: run `resviz export {name} --weights {variant}`")


def mb(n: float) -> str:
    return f"{n / 1e6:,.1f}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR))
    p.add_argument("--extras", default="", help="extras of the runtime stage (the Dockerfile's EXTRAS: '' or cluster)")
    p.add_argument("--out", default=str(RESULTS / "image_size.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="resviz-image-") as tmp:
        rows = packages(build_runtime_venv(Path(tmp), args.extras))
    counted = [r for r in rows if r["name"].lower() not in IN_BASE_IMAGE]
    pkg_total = sum(r["bytes"] for r in counted)
    print(f"runtime stage packages (pip install of the wheel{f' [{args.extras}]' if args.extras else ''}):")
    print(f"{'package':<28} {'version':<14} {'MB':>8}")
    for r in counted:
        print(f"{r['name']:<28} {r['version']:<14} {mb(r['bytes']):>8}")
    print(f"{'all packages':<43} {mb(pkg_total):>8}")
    models_dir = Path(args.models_dir)
    print(f"\nmodels (every serving graph of each, measured in {models_dir}):")
    model_rows = []
    print(f"{'':<20} {'all MB':>8} {'weights':>8}")
    for name, variant in IMAGE_EXPORTS:
        size, weights, where = graphs_bytes(models_dir, name, variant)
        row = {"model": name, "weights": variant, "bytes": size, "weights_bytes": weights, "measured": where}
        model_rows.append(row)
        print(f"{name + '@' + variant:<20} {mb(size):>8} {mb(weights):>8}  ({where})")
    models_total = sum(r["bytes"] for r in model_rows)
    imagenet = sum(r["bytes"] for r in model_rows if r["model"] in ("resnet18", "resnet50"))
    base = BASE_IMAGE_MB * 1e6
    total = base + pkg_total + models_total
    print(f"{'all models':<20} {mb(models_total):>8} MB (ResNet-18 and -50: {mb(imagenet)} MB)")
    print(f"\nexpected image size: {BASE_IMAGE} ~{BASE_IMAGE_MB} MB + packages {mb(pkg_total)} MB")
    print(f"  + models {mb(models_total)} MB = {mb(total)} MB")
    print(f"  without the ImageNet models (--build-arg IMAGENET=0): {mb(total - imagenet)} MB")
    print(f"  without models (a models volume): {mb(base + pkg_total)} MB")
    gap = total - TARGET_MB * 1e6
    print(f"target < {TARGET_MB} MB: {'met' if gap < 0 else 'missed'} by {mb(abs(gap))} MB")
    result = {
        "base_image": BASE_IMAGE,
        "base_image_bytes": base,
        "extras": args.extras,
        "packages": rows,
        "packages_bytes": pkg_total,
        "models": model_rows,
        "models_bytes": models_total,
        "expected_image_bytes": total,
        "target_bytes": TARGET_MB * 1e6,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
