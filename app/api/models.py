"""Model listing and manifests."""

from __future__ import annotations

from fastapi import APIRouter

from app import arch
from app.api.deps import ModelName, RegistryDep, WeightsQuery
from app.api.schemas.common import documented
from app.api.schemas.responses import Manifest, ModelRow
from app.specs import SPECS

router = APIRouter(prefix="/api/models", tags=["models"])


def model_rows(registry: RegistryDep) -> list[dict]:
    """Every model with its counts (from the definitions), weights and export state."""
    rows = []
    for name in registry.names():
        row = arch.summary(SPECS[name])
        row["weights"] = registry.variants(name)
        row["exported"] = registry.is_exported(name)
        rows.append(row)
    return rows


@router.get("", **documented(list[ModelRow]))
def list_models(registry: RegistryDep) -> list[dict]:
    """Every model of the family: name, family, depth, blocks, params, MACs, weights."""
    return model_rows(registry)


@router.get("/{name}", **documented(Manifest, errors=(404, 503)))
def get_manifest(name: ModelName, registry: RegistryDep, weights: WeightsQuery = None) -> dict:
    """The manifest of one model (exported on first use)."""
    return registry.get(name, weights).manifest
