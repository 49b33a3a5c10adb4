# syntax=docker/dockerfile:1
# Walwarden operator and runner image. First version: multi-stage, non-root, pinned Python.
ARG BASE_IMAGE=python:3.11-slim-bookworm
ARG PG_MAJOR=15

FROM ${BASE_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${BASE_IMAGE}
ARG PG_MAJOR
# pg_dump/pg_restore must be at least as new as the vault's server: PG_MAJOR picks them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin walwarden
USER 10001
ENTRYPOINT ["walwarden"]
CMD ["run"]
