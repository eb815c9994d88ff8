# resviz: build, export the default models, serve (editable install: static/ and templates/ sit beside app/).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 OPENBLAS_NUM_THREADS=1 \
    RESVIZ_DATA_DIR=/data RESVIZ_MODELS_DIR=/app/models
WORKDIR /app

# torch is needed only to export the graphs; the server runs on onnxruntime + numpy.
COPY pyproject.toml README.md ./
COPY app ./app
RUN pip install -e '.[export]'

COPY static ./static
COPY templates ./templates
COPY models ./models
RUN resviz export --defaults --missing-only --quiet

VOLUME /data
EXPOSE 8000
CMD ["resviz", "serve", "--host", "0.0.0.0", "--port", "8000"]
