# syntax=docker/dockerfile:1
# azure-auth-proxy container image.
#
#   make image                     # = docker build --build-arg VERSION=<proxy.__version__> ...
#   docker build --build-arg VERSION="$(python3 -c 'import proxy; print(proxy.__version__)')" \
#     -t azure-auth-proxy .
#   docker run --rm -p 4180:4180 \
#     -v "$PWD/deploy/proxy.toml:/etc/azure-auth-proxy/proxy.toml:ro" \
#     -v "$PWD/deploy/secrets:/run/secrets:ro" azure-auth-proxy
#
# Configuration: mount a proxy.toml at /etc/azure-auth-proxy/proxy.toml (or point -c /
# $PROXY_CONFIG elsewhere); override any key with PROXY_<SECTION>_<KEY>; give secrets as
# files (client_secret_file, secret_file, redis_url_file: Docker/Kubernetes secrets).
# Other commands: docker run --rm -v ... azure-auth-proxy check-config
#
# Two stages: the builder turns the project and every dependency into wheels; the final
# stage installs only those wheels (from a bind mount, so no wheel stays in a layer) on a
# clean slim base: no compiler, no source tree, no build backend.
#
# VERSION (the org.opencontainers.image.version label) comes from the one version source,
# proxy/__init__.py: `make image` passes it. When given, only the wheel of exactly that
# version is installed, so a label that disagrees with the package fails the build; a plain
# `docker build .` without it leaves the label empty.
#
# Base image: pinned to a patch release. Bump it with Renovate/Dependabot; in production
# pin the digest as well (python:3.12.x-slim-trixie@sha256:...).
ARG PYTHON_IMAGE=python:3.12.12-slim-trixie

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what the wheel needs (see .dockerignore): pyproject.toml, README.md (the long
# description), LICENSE (shipped in the wheel) and the package.
COPY pyproject.toml README.md LICENSE ./
COPY proxy ./proxy
# The project and all its dependencies as wheels (every dependency ships manylinux wheels,
# so nothing is compiled); the final stage installs from here without an index.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=""
# OCI annotations (image-spec annotations.md); licenses is the SPDX expression of
# pyproject.toml's license.
LABEL org.opencontainers.image.title="azure-auth-proxy" \
      org.opencontainers.image.description="Identity-aware reverse proxy: Microsoft Entra ID sign-in in front of internal apps" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="https://github.com/example/azure-auth-proxy" \
      org.opencontainers.image.version="${VERSION}"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PROXY_CONFIG=/etc/azure-auth-proxy/proxy.toml
# A fixed numeric uid/gid: Kubernetes' runAsNonRoot can verify it, and mounted secrets
# can be made readable to it (fsGroup 10001, or chown 10001 on the host).
RUN groupadd --system --gid 10001 azp \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin azp \
 && mkdir -p /etc/azure-auth-proxy
# --no-index: only the wheels built above, never a second resolution against PyPI.
# ${VERSION:-*}: the shell picks the wheel of exactly VERSION (none: a missing file, the
# build fails) or, without VERSION, the one wheel there is.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
      /wheels/azure_auth_proxy-${VERSION:-*}-py3-none-any.whl
USER 10001:10001
EXPOSE 4180
# Liveness on /ping. slim has no curl or wget, so Python's urllib does the request; any
# non-2xx, refused connection or timeout exits non-zero. Adjust the port if you change
# [server] listen.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:4180/ping', timeout=4)"]
ENTRYPOINT ["azure-auth-proxy"]
CMD ["run", "-c", "/etc/azure-auth-proxy/proxy.toml"]
