"""Class names for predictions: ImageNet's 1000, CIFAR-10's 10, or the generated set's 10."""

from __future__ import annotations

import json
from functools import lru_cache

from app.paths import PACKAGE

CIFAR10 = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_DATA = PACKAGE / "data"


@lru_cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in torchvision's index order."""
    return tuple(json.loads((_DATA / "imagenet_classes.json").read_text()))


def class_names(manifest: dict) -> tuple[str, ...]:
    """Names for the model's output indices."""
    if manifest.get("class_names"):
        return tuple(manifest["class_names"])
    if manifest.get("classes") == "imagenet":
        return imagenet_classes()
    return CIFAR10
