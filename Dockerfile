# syntax=docker/dockerfile:1
# The Spillway image: both binaries in one image —
#   spillway           the worker and user CLI (package spillway-worker), the ENTRYPOINT:
#                      the operator's worker pods pass only `run -f /etc/spillway/pipeline.yaml`
#   spillway-operator  the controller (package spillway-operator); the chart runs
#                      `spillway-operator run` as the container command
# Build (docs/install.md): docker build -t spillway-dev/spillway:0.1.0 .
# (podman build and buildah bud read the same file.)

ARG RUST_VERSION=1.95.0
ARG DEBIAN_RELEASE=bookworm

# --- builder: the release binaries -------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS builder
# rdkafka builds the bundled librdkafka from source (configure, make, perl), aws-lc-sys needs
# cmake and a C/C++ toolchain, libz-sys links zlib.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cmake g++ make perl python3 pkg-config zlib1g-dev libclang-dev clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# rust-toolchain.toml pins the toolchain; the first cargo call installs it (rustup's
# auto-install) before the sources are copied, so the layer survives source changes.
COPY rust-toolchain.toml ./
RUN cargo --version
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p spillway-worker --bin spillway \
      -p spillway-operator --bin spillway-operator \
 && install -D -m 0755 target/release/spillway /out/spillway \
 && install -D -m 0755 target/release/spillway-operator /out/spillway-operator

# --- runtime: a small Debian with CA certificates, non-root -------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="spillway" \
      org.opencontainers.image.description="Kafka → Avro → Delta Lake / Parquet streaming ingestion: worker (spillway) and operator (spillway-operator)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# ca-certificates: TLS to Kafka, the schema registry and object storage (native roots).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin nonroot
COPY --from=builder /out/spillway /out/spillway-operator /usr/local/bin/
# The same numeric user the chart and the worker pods run as (runAsNonRoot needs a number).
USER 65532:65532
# The root filesystem is read-only in the cluster; /tmp is an emptyDir there.
WORKDIR /tmp
ENV RUST_LOG=info
# Two glibc malloc arenas instead of 8 per core: the worker's batches are allocated on one
# thread and freed on another, and more arenas only fragment (`spillway bench pipeline` on
# 20 M records: Parquet peak RSS 1344 -> 854 MiB, docs/benchmarks.md). A pod's
# `spec.worker.env` can override it.
ENV MALLOC_ARENA_MAX=2
# /progress, /metrics, /healthz, /readyz of both binaries.
EXPOSE 8080
ENTRYPOINT ["spillway"]
CMD ["--help"]
