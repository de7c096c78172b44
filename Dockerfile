# syntax=docker/dockerfile:1
# The image `mesh install` names (turnout.cluster.names.IMAGE): one image for the control
# plane (`mesh serve --kubernetes`), the proxy sidecar (`mesh proxy`) and the init container
# (`mesh proxy-init`, which needs iptables and runs as root with NET_ADMIN/NET_RAW).
#
#   docker build -t turnout/turnout:0.1.0 .
#
# tests/cluster/test_dockerfile.py keeps this file true (sources exist, tag = version, user).

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
# turnout/engine/crds and turnout/demo/examples are links to these two: the build follows them.
COPY crds ./crds
COPY examples ./examples
COPY turnout ./turnout
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="turnout" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
 && rm -rf /wheels \
 && useradd --uid 2102 --user-group --no-create-home --shell /usr/sbin/nologin turnout
# The root filesystem is read-only in the cluster: no bytecode files, logs unbuffered.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# names.PROXY_UID: the proxy's own traffic is what iptables leaves uncaptured (owner match).
USER 2102:2102
ENTRYPOINT ["mesh"]
CMD ["--help"]
