"""What every part of the contract shares: the open base model, errors, ``documented``, request parameters."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

Num = float | None  # a statistic: null where it is not finite


class Open(BaseModel):
    """An object of the contract (further keys allowed)."""

    model_config = ConfigDict(extra="allow")


# ---------------------------------------------------------------- errors


class ErrorDetail(Open):
    """An error the client can read: what went wrong, in words."""

    detail: str = Field(description="What was wrong with the request, or why it cannot be answered now.")


class NotFound(ErrorDetail):
    """Something named by the request does not exist (or its graphs are not exported)."""

    known: list[str] | None = Field(None, description="For an unknown model: every model name the server knows.")


class ExportJob(Open):
    """One background export (as ``GET /api/exports`` lists it)."""

    key: str | list[Any] | None = None
    model: str
    weights: str
    state: str = Field(description="`queued`, `running`, `done` or `failed`.")
    graphs: list[str] = Field(description="Graph kinds this export writes.")
    graphs_done: list[str]
    current: str | None = Field(None, description="The graph being exported now.")
    progress: float = Field(description="Fraction done, 0 to 1.")
    estimate_s: float = Field(description="Seconds until this export should be done (the queue ahead included).")
    position: int = Field(description="Exports ahead of this one in the queue (0: running or next).")
    priority: str
    elapsed_s: float | None = None
    error: str | None = None


class Unavailable(ErrorDetail):
    """Busy, or the graphs the request needs are being exported: retry after ``Retry-After`` seconds."""

    export: ExportJob | None = Field(None, description="The export this request waits for, if any.")


ERRORS: dict[int, tuple[type[BaseModel], str]] = {
    400: (ErrorDetail, "Bad request: the message says which parameter or upload is wrong."),
    401: (ErrorDetail, "The operator token is missing or wrong."),
    403: (ErrorDetail, "Refused: operator routes without a configured token, or a change from another site."),
    404: (NotFound, "Unknown model, weights, image or graph not exported (`known` lists model names)."),
    413: (ErrorDetail, "The request body is over the upload limit."),
    429: (ErrorDetail, "Too many uploads from this address; see `Retry-After`."),
    503: (Unavailable, "Busy or exporting: retry after `Retry-After` seconds."),
    507: (ErrorDetail, "The image store or the disk is full."),
}


def documented(model: Any, status: int = 200, errors: tuple[int, ...] = (), description: str = "") -> dict[str, Any]:
    """Route keywords that show ``model`` as the answer in the schema without validating the answer.

    ``response_model`` stays a pass-through (the answer is serialised exactly as before: NaN as null,
    tuples as lists), and ``responses`` names the model, so the schema shows it.
    """
    responses = {status: {"model": model, "description": description or "Success"}, **error_responses(*errors)}
    return {"response_model": Annotated[Any, WithJsonSchema({})], "responses": responses}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` entries of these error statuses (each a JSON ``detail``)."""
    return {code: {"model": ERRORS[code][0], "description": ERRORS[code][1]} for code in codes}


# ---------------------------------------------------------------- request parameters (OpenAPI only)


def query_param(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    """One query parameter as OpenAPI describes it (the route reads it from the request itself)."""
    param = {"name": name, "in": "query", "required": required, "schema": schema, "description": description}
    if name in EXAMPLES:
        param["example"] = EXAMPLES[name]
    return param


def sample_id() -> str:
    """The id of a built-in sample image (an example that works on any server)."""
    from app.runtime.samples import sample_hashes

    by_file = {file: sha for sha, file in sample_hashes().items()}
    return by_file.get("checkerboard-32.png") or next(iter(by_file.values()), "0" * 64)


EXAMPLES: dict[str, Any] = {  # values that work on any server: Swagger UI's defaults, the fuzzer's explicit cases
    "image_id": [sample_id()],
    "weights": "init",
    "gates": "all-on",
    "bn": "running",
    "k": 8,
    "target": "predicted",
}


WEIGHTS = "Weights variant: `init`, `trained`, `plain` or an imported one such as `imagenet`; default: the model's."
GATES = "Shortcut gates: `all-on` (the ResNet, default), `all-off` (its plain twin) or one number in [0, 1] per block."
BN = "Batch norm with `running` statistics (default) or the current `batch`'s."
IMAGE_ID = "A stored image's id (64 hex, from `POST /api/images`) or a built-in sample's; may repeat."
TARGET = "Class index for the loss (or the explained score), or `predicted` (default: the top-1 class of each image)."
STR = {"type": "string"}

IMAGE_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "image_id": ({"type": "array", "items": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}, IMAGE_ID),
    "weights": (STR, WEIGHTS),
    "gates": ({"type": "string", "default": "all-on"}, GATES),
}
ANALYZE_FIELDS = {
    **IMAGE_FIELDS,
    "bn": ({"type": "string", "enum": ["running", "batch"], "default": "running"}, BN),
    "k": ({"type": "integer", "minimum": 1, "maximum": 64, "default": 8}, "Feature-map thumbnails per layer."),
    "feature_maps": (
        {"type": "string", "enum": ["blocks", "all", "none"], "default": "blocks"},
        "Which taps get feature-map thumbnails: block outputs, every tap, or none.",
    ),
    "sections": (
        {"type": "string", "enum": ["all", "summary"], "default": "all"},
        "`summary`: only what the default view draws first (prediction, layer statistics, block norms).",
    ),
}
TARGET_FIELD = {"target": ({"oneOf": [{"type": "integer", "minimum": 0}, {"const": "predicted"}]}, TARGET)}
GRADIENT_FIELDS = {**IMAGE_FIELDS, "bn": ANALYZE_FIELDS["bn"], **TARGET_FIELD}
LESION_FIELDS = {**IMAGE_FIELDS, **TARGET_FIELD}


def _explain_fields() -> dict[str, tuple[dict[str, Any], str]]:
    """The fields of ``POST /api/models/{name}/explain``, with the runtime's own choices and limits."""
    from app.runtime import explain

    def bounded(limits: tuple[int, int, int]) -> dict[str, Any]:
        return {"type": "integer", "minimum": limits[0], "maximum": limits[1], "default": limits[2]}

    return {
        **GRADIENT_FIELDS,
        "method": (
            {"type": "string", "enum": list(explain.METHODS), "default": explain.CAM_METHODS[0]},
            "Class activation maps `gradcam`, `gradcampp`, `hirescam`, `layercam` (at a layer), or maps at the "
            "input: `saliency` (max_c |dS/dx|), `smoothgrad`, `ig` (integrated gradients from a black image).",
        ),
        "layer": (
            STR,
            "For the CAMs: `all` (the stem and every block), the stem's tap (`relu`, `maxpool`) or a block such "
            "as `layer3.8`; default: the last block. The input methods map the input.",
        ),
        "samples": (
            bounded(explain.SAMPLES),
            "SmoothGrad's noisy copies.",
        ),
        "steps": (
            bounded(explain.STEPS),
            "Integrated gradients' steps (midpoint rule).",
        ),
        "overlays": (
            {"type": "boolean", "default": True},
            "With `layer=all`: `false` leaves the per-layer overlay PNGs and the input PNG out (null).",
        ),
    }


EXPLAIN_FIELDS = _explain_fields()


def image_operation(fields: dict[str, tuple[dict[str, Any], str]], max_images: str) -> dict[str, Any]:
    """``openapi_extra`` of an operation taking images: multipart ``image`` files and/or ``image_id``, and fields.

    Every field may come as a query parameter or as a form field of the multipart body (the form's
    value wins); the route reads them from the request itself, so its messages and limits stay its own.
    """
    params = [query_param(k, schema, text) for k, (schema, text) in fields.items()]
    props: dict[str, Any] = {
        "image": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": f"Image files (PNG, JPEG, GIF, WebP), {max_images}.",
        }
    }
    props.update({k: {**schema, "description": text} for k, (schema, text) in fields.items()})
    body = {
        "required": False,
        "description": "The images as multipart uploads (or none, with `image_id` in the query).",
        "content": {"multipart/form-data": {"schema": {"type": "object", "properties": props}}},
    }
    return {"parameters": params, "requestBody": body}


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "One image (PNG, JPEG, GIF, WebP), at least 256 px on its shorter side.",
                        }
                    },
                }
            }
        },
    }
}


REGRESSION_FIELDS: dict[str, Any] = {
    "dataset": {"type": "string", "description": "A generated data set (`GET /api/regression/datasets`)."},
    "degree": {"type": "integer", "minimum": 1, "default": 1, "description": "Polynomial degree of the fit."},
    "x_columns": {"type": "string", "description": "Predictors, comma-separated; default: the first column but y."},
    "y_column": {"type": "string", "description": "Response column; default: the last."},
}
REGRESSION_BODY = {
    "requestBody": {
        "required": False,
        "description": "JSON (a CSV's text in `csv`, or a `dataset`), or a multipart form with the CSV in `file`.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "csv": {"type": "string", "description": "The text of a CSV file with a header row."},
                        **REGRESSION_FIELDS,
                    },
                }
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary", "description": "A CSV file."},
                        **REGRESSION_FIELDS,
                    },
                }
            },
        },
    }
}
