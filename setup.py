"""Packaging beside pyproject.toml: the wheel holds app/ with static/, templates/ and the shipped weights inside it.

In the repository those folders sit beside app/ (static/, templates/, models/weights/, models/landscapes/); in a
wheel they are app/static, app/templates, app/models/weights and app/models/landscapes. ``app.paths.shipped_path``
finds them in either place.
Every folder is listed as a package of its own (setuptools warns about data in unlisted folders), so new
modules under app/ and new folders under static/ are picked up without editing this file.
"""

from setuptools import find_namespace_packages, find_packages, setup


def folders(package: str, where: str) -> list[str]:
    """``package`` and one package per folder below ``where`` (which it maps to)."""
    return [package] + [f"{package}.{name}" for name in find_namespace_packages(where)]


packages = find_packages(include=["app", "app.*"]) + ["app.data"]
packages += folders("app.static", "static") + folders("app.templates", "templates")
# the committed weights and loss landscapes only, never exported graphs
packages += ["app.models", "app.models.weights", "app.models.landscapes"]
package_data = {p: ["*"] for p in packages if p.startswith(("app.static", "app.templates"))}
package_data["app.data"] = ["*.json"]
package_data["app.models.weights"] = ["*.pt", "*.json"]
package_data["app.models.landscapes"] = ["*.json"]

setup(
    packages=packages,
    package_dir={"app.static": "static", "app.templates": "templates", "app.models": "models"},
    package_data=package_data,
)
