# resviz in two stages. The build stage installs torch and exports every serving graph of the default models;
# the runtime stage holds the server's dependencies only (onnxruntime + numpy, no torch), runs as a non-root
# user and gets the exported models copied in. Contents and expected size: docs/deploy.md (bench/image_size.py).
#
#   docker build -t resviz .
#   docker run -p 8000:8000 -v resviz-images:/data resviz
#   docker build --build-arg IMAGENET=0 -t resviz:cifar .     # without the ResNet-18/50 graphs (1.1 GB of them)
#   docker build --build-arg EXTRAS=cluster -t resviz:ray .   # with Ray Serve, for KubeRay (deploy/k8s/)

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------- build: the wheel and the exported graphs
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
WORKDIR /src
# torch from PyTorch's CPU wheel index: the package index's default torch wheel for Linux is the multi-GB CUDA
# build, and exporting needs no GPU. Installed first and alone, so this layer stays cached across code changes.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml setup.py README.md ./
COPY app ./app
COPY static ./static
COPY templates ./templates
COPY models/weights ./models/weights
COPY models/landscapes ./models/landscapes
# The wheel the runtime stage installs, and the same wheel with the export extra here (torch is there already).
RUN pip wheel --no-deps -w /dist . \
 && pip install "$(ls /dist/resviz-*.whl)[export]"
# Every serving graph of the default models with their default weights (--defaults: ResNet-20/56/110 trained,
# ResNet-18/50 He-init), and what the pages compare them with: the plain twins (lab, gradients, depth sweep)
# and the trained ResNet-32/44 (the depth sweep's rows). IMAGENET=0 leaves ResNet-18/50 out.
ARG IMAGENET=1
RUN set -e; \
    if [ "$IMAGENET" = 1 ]; then resviz --models-dir /models export --defaults --quiet; \
    else resviz --models-dir /models export resnet20 resnet56 resnet110 --quiet; fi; \
    resviz --models-dir /models export resnet20 resnet32 resnet44 resnet56 resnet110 --weights plain --quiet; \
    resviz --models-dir /models export resnet32 resnet44 --weights trained --quiet; \
    rm -f /models/.export.lock

# ---------------------------------------------------------------- runtime: the server, no torch
FROM ${PYTHON_IMAGE} AS runtime
# EXTRAS=cluster adds Ray Serve (and wget, which KubeRay's probes run); EXTRAS=gpu is not the way to CUDA:
# see docs/deploy.md (onnxruntime-gpu replaces onnxruntime, on a CUDA base image).
ARG EXTRAS=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1
COPY --from=build /dist /dist
RUN set -e; \
    pip install "$(ls /dist/resviz-*.whl)${EXTRAS:+[$EXTRAS]}"; \
    rm -rf /dist; \
    if [ -n "$EXTRAS" ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends wget \
      && rm -rf /var/lib/apt/lists/*; fi; \
    useradd --create-home --uid 10001 --user-group resviz; \
    mkdir -p /data && chown resviz:resviz /data
# The graphs belong to root: the server reads them, never writes them (it exports nothing: no torch here).
COPY --from=build /models /app/models
ENV RESVIZ_MODELS_DIR=/app/models \
    RESVIZ_DATA_DIR=/data \
    RESVIZ_EXPORT_ON_START=false \
    RESVIZ_EXPORT_ON_DEMAND=false \
    RESVIZ_PROVIDERS=auto
USER resviz
WORKDIR /home/resviz
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["resviz", "serve", "--host", "0.0.0.0", "--port", "8000"]
