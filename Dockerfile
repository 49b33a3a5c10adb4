# Walwarden's image: the operator (`walwarden run`, the default command) and the runner that its
# Jobs start (`walwarden runner backup|verify|restore`), running as uid 10001.
#
#   docker build --network host -t walwarden:<version> .
#   docker build --network host --build-arg BASE_IMAGE=walwarden-base:bookworm -t walwarden:<version> .
#
# <version> is the package's (walwarden.__version__): the chart and the demo name the image
# walwarden:<version>. bash docker/build-image.sh runs the second form where no container registry
# is reachable, after making that base from Debian's packages (docker/make-base-image.sh).
# It needs BuildKit (DOCKER_BUILDKIT=1 with a client older than 23, buildx otherwise), and only its
# built-in Dockerfile frontend: there is no `# syntax=` line, which would pull a frontend image.
# Behind a TLS-intercepting proxy, give pip the CA bundle to trust as a build secret (never a layer):
#   --secret id=ca-certificates,src=/etc/ssl/certs/ca-certificates.crt

# The base: a Debian bookworm image. The default, the official Python image, has CPython
# $PYTHON_VERSION in /usr/local; a plain Debian base (docker/make-base-image.sh) has no Python, and
# Debian's python$PYTHON_VERSION is installed on it. Either way the interpreter is pinned to
# $PYTHON_VERSION (checked below), and both stages use the same one.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG PYTHON_VERSION=3.11

# PostgreSQL client tools (pg_dump, pg_restore, psql) of this major version. pg_dump refuses to
# dump a server newer than itself, and pg_restore must be >= the version of the pg_dump that wrote
# the archive (an older pg_restore cannot read a newer archive), while a newer client dumps and
# restores older servers. So pick the newest major the vault's PostgreSQL servers may run. 15 is
# Debian bookworm's own; any other major comes from the PostgreSQL project's apt repository
# (apt.postgresql.org, set up with the signing key that Debian's postgresql-common ships).
ARG PG_MAJOR=15

# -- base: the base image with the pinned Python; the stages below start from it -----------------
FROM ${BASE_IMAGE} AS base
ARG PYTHON_VERSION
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    if ! command -v "python${PYTHON_VERSION}" >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends "python${PYTHON_VERSION}"; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi; \
    "python${PYTHON_VERSION}" -c 'import sys; print("Python", sys.version)'

# -- requirements: the runtime dependencies, from pyproject.toml ----------------------------------
# A stage of its own so that the dependency layer below is keyed by this list's content: a change
# elsewhere in pyproject.toml (the test extras, say) does not reinstall them.
FROM base AS requirements
ARG PYTHON_VERSION
WORKDIR /src
COPY pyproject.toml ./
RUN "python${PYTHON_VERSION}" -c 'import tomllib; \
project = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(project["dependencies"]))' > /requirements.txt

# -- build: a virtualenv in /opt/walwarden with walwarden and its dependencies --------------------
FROM base AS build
ARG PYTHON_VERSION
ARG DEBIAN_FRONTEND=noninteractive
# pip's index is PyPI unless this is set (a mirror). The venv's pip is this version whatever the
# base brings (ensurepip's is 23.0 on Debian bookworm, 24 on the official image), so both bases
# resolve alike; docker/constraints.txt steers the resolver past releases that cannot go together.
ARG PIP_INDEX_URL
ARG PIP_VERSION=26.3
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# Debian's python has venv's ensurepip in a package of its own; the official image has it.
RUN set -eux; \
    if ! "python${PYTHON_VERSION}" -c 'import ensurepip' 2>/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends "python${PYTHON_VERSION}-venv"; \
        rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi; \
    "python${PYTHON_VERSION}" -m venv /opt/walwarden
COPY --from=requirements /requirements.txt /tmp/requirements.txt
COPY docker/constraints.txt /tmp/constraints.txt
# pip's download cache is a build cache mount: kept between builds, never in a layer.
RUN --mount=type=cache,id=walwarden-pip,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates \
    set -eux; \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    /opt/walwarden/bin/pip install "pip==${PIP_VERSION}"; \
    /opt/walwarden/bin/pip install -r /tmp/requirements.txt -c /tmp/constraints.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN --mount=type=cache,id=walwarden-pip,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates \
    set -eux; \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi; \
    /opt/walwarden/bin/pip install --no-deps .; \
    /opt/walwarden/bin/pip check; \
    /opt/walwarden/bin/python -m pip uninstall -y -q pip setuptools; \
    /opt/walwarden/bin/walwarden --version

# -- runtime ---------------------------------------------------------------------------------------
FROM base AS runtime
ARG PG_MAJOR
ARG DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    apt-get update; \
    if ! apt-cache show "postgresql-client-${PG_MAJOR}" >/dev/null 2>&1; then \
        apt-get install -y --no-install-recommends ca-certificates postgresql-common; \
        /usr/share/postgresql-common/pgdg/apt.postgresql.org.sh -y; \
    fi; \
    apt-get install -y --no-install-recommends ca-certificates "postgresql-client-${PG_MAJOR}"; \
    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_restore" --version | grep -q " ${PG_MAJOR}\."
RUN groupadd --gid 10001 walwarden \
 && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/walwarden --shell /usr/sbin/nologin walwarden
COPY --from=build /opt/walwarden /opt/walwarden
# The tools of PG_MAJOR first on PATH (not Debian's pg_wrapper, which picks a version itself).
ENV PATH=/opt/walwarden/bin:/usr/lib/postgresql/${PG_MAJOR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
LABEL org.opencontainers.image.title="walwarden" \
      org.opencontainers.image.description="Kubernetes operator that backs up and restores an Institutional Vault's PostgreSQL state" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.walwarden.pg-major="${PG_MAJOR}"
USER 10001:10001
WORKDIR /home/walwarden
ENTRYPOINT ["walwarden"]
CMD ["run"]
