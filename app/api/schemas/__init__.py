"""The JSON contract of the API: response models, request bodies and query parameters for the OpenAPI schema.

These models describe answers; they do not build them. A route names its model with ``documented(...)``,
which puts it in the schema while the answer goes out as before, never validated against the model: the
big answers (analyses, gradients, feature maps) as their cached ``Payload`` bytes, a dict as FastAPI
always serialised it.
Every object allows keys beyond the ones listed (``additionalProperties``): an answer may grow.
Numbers the server could not compute (NaN, infinity) are ``null``; such fields are typed ``float | None``.

``common``: the base model, error answers, ``documented`` and the request parameters of the upload routes;
``analysis``: the explorer's answers (analysis, feature map, gradients, lesion, depth sweep, collapse table);
``responses``: health, models and manifests, stored images, the lab, chapter, regression and exports;
``shattered``: the input gradient along a line of inputs (one image) and the lab's shipped study of it.
"""
