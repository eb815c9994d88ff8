"""Model listing and manifests."""

from __future__ import annotations

from fastapi import APIRouter

from app import arch
from app.api.deps import RegistryDep
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


@router.get("")
def list_models(registry: RegistryDep) -> list[dict]:
    """Every model of the family: name, family, depth, blocks, params, MACs, weights."""
    return model_rows(registry)


@router.get("/{name}")
def get_manifest(name: str, registry: RegistryDep, weights: str | None = None) -> dict:
    """The manifest of one model (exported on first use)."""
    return registry.get(name, weights).manifest
