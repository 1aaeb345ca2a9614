# syntax=docker/dockerfile:1.7
#
# Image for any binary of the workspace (reference-service by default), built for the eHealth platform.
#
#   docker build --build-arg BASE_IMAGE=<eHealth base image from Harbor> \
#                --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" \
#                -t <registry>/reference-service:0.1.0 .
#
# Two stages: `builder` compiles with cargo, `runtime` holds the binary and nothing else. The runtime stage takes
# everything it needs from the `builder` stage's /out only (binary and CA bundle), so where the Rust image cannot
# be pulled, tests run the builder's command on the host and hand its /out over with
# `--build-context builder=DIR`, exercising this very runtime stage (docs/operations.md, tests/image).

# The builder's Debian release must not be newer than the base image's: the binary links the builder's glibc,
# and a newer glibc's symbol versions are missing from an older runtime (bookworm <-> distroless debian12).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
# R4: production builds set this to the eHealth base image from Harbor (docs/deploy-ehealth.md). The default is a
# public distroless image with glibc, libgcc and CA certificates, no shell and no package manager.
ARG BASE_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# checkov cannot expand build args in FROM and reads `${BUILDER_IMAGE}` as an untagged (latest) image; both
# defaults above carry explicit tags, and tests/image/test_dockerfile.py fails if either loses its tag.
# checkov:skip=CKV_DOCKER_7:FROM lines use build args whose defaults carry explicit tags

FROM ${BUILDER_IMAGE} AS builder
# The binary to build, and the workspace package that holds it (by default the package of the same name).
# Building one package, not `--workspace`, keeps features that other members enable (test stand-ins, say) out
# of the production binary.
ARG BIN=reference-service
ARG PACKAGE=${BIN}
WORKDIR /src
COPY . .
# The cargo registry and target directory live in BuildKit cache mounts: a source change recompiles only the
# workspace crates, dependencies stay compiled between builds, and nothing of the cache ends up in a layer.
# `--locked` builds exactly Cargo.lock. No credentials are needed: every dependency comes from crates.io.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --package "${PACKAGE}" --bin "${BIN}" \
    && mkdir -p /out/etc/ssl/certs \
    && cp "target/release/${BIN}" /out/service \
    && cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

FROM ${BASE_IMAGE} AS runtime
ARG BIN=reference-service
ARG VERSION=0.0.0-dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="${BIN}" \
      org.opencontainers.image.description="Telemedicine service built on telemed-kit" \
      org.opencontainers.image.source="https://github.com/telemed-kit/telemed-kit" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# The service makes outbound TLS calls (rustls with the platform verifier reads the system bundle): the builder's
# bundle is copied so that the image holds one whatever the base image ships.
COPY --from=builder --chown=0:0 --chmod=0444 /out/etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# Owned by root and not writable: the service user can run the binary but never change it.
COPY --from=builder --chown=0:0 --chmod=0555 /out/service /usr/local/bin/service
# R5: a numeric user, so that Kubernetes can verify runAsNonRoot without a passwd lookup. The chart's
# securityContext.runAsUser matches it (tests/chart checks the two agree).
USER 10001:10001
EXPOSE 8080
# R8: the kit's graceful shutdown starts on SIGTERM, sent to the binary itself: it is PID 1, there is no shell.
STOPSIGNAL SIGTERM
# Kubernetes ignores Docker's HEALTHCHECK and probes /healthz and /livez itself (chart/templates/deployment.yaml);
# the image holds no shell or HTTP client that a HEALTHCHECK command could use.
# checkov:skip=CKV_DOCKER_2:health is checked by the Kubernetes readiness, liveness and startup probes
ENTRYPOINT ["/usr/local/bin/service"]
