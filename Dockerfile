# syntax=docker/dockerfile:1
# meshscope's image: the web UI built with Node.js, the release binary built with Rust (the
# UI embedded, stripped, its debug info kept apart), on a Debian root filesystem that holds
# the C library, libgcc and a non-root user, nothing else.
#
#   docker build -t meshscope:0.1.0 .              (or podman build; about 30 min on 2 cores)
#   docker run -p 11800:11800 -p 12800:12800 -v meshscope-data:/data meshscope:0.1.0 serve --demo
#   docker build --target binary -o out .           (out/meshscope and out/meshscope.debug)
#
# scripts/image builds the same runtime stage (the lines from `FROM scratch AS runtime` on)
# without a registry: it makes the root filesystem with deploy/image/rootfs.sh on the host
# and gives it, and a binary, to those lines as the stages `rootfs` and `binary`.
#
# Base images are pinned by tag. Pin them by digest too where you build (the digest your
# registry serves for the tag: `docker buildx imagetools inspect IMAGE:TAG`), e.g.
# --build-arg RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm@sha256:...
ARG NODE_IMAGE=docker.io/library/node:20.20.2-bookworm-slim
ARG RUST_IMAGE=docker.io/library/rust:1.95.0-slim-bookworm
ARG DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
ARG DEBIAN_SUITE=bookworm

# The dashboard: `npm ci` from the lock file, then the production build into ui/dist.
FROM ${NODE_IMAGE} AS ui
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build

# The release binary, with the built UI in place so that the query crate's build script
# embeds it instead of building it again (it rebuilds only when ui/dist is older than
# ui/src).
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
COPY --from=ui /src/ui/dist ui/dist
RUN find ui/dist -exec touch {} + \
 && cargo build --release --locked --bin meshscope \
 && mkdir /out \
 && objcopy --only-keep-debug target/release/meshscope /out/meshscope.debug \
 && objcopy --strip-all --add-gnu-debuglink=/out/meshscope.debug target/release/meshscope /out/meshscope

# The binary and its debug info, alone: `--target binary -o DIR` exports them.
FROM scratch AS binary
COPY --from=build /out/ /

# The root filesystem, made by the same script scripts/image runs.
FROM ${DEBIAN_IMAGE} AS rootfs
ARG DEBIAN_SUITE
RUN apt-get update \
 && apt-get install -y --no-install-recommends mmdebstrap \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/image/rootfs.sh /usr/local/bin/rootfs.sh
RUN rootfs.sh "${DEBIAN_SUITE}" /rootfs.tar && mkdir /rootfs && tar -C /rootfs -xpf /rootfs.tar

FROM scratch AS runtime
COPY --from=rootfs /rootfs/ /
# COPY makes what it copies root's: /data goes to the user that writes it.
COPY --from=rootfs --chown=65532:65532 /rootfs/data/ /data/
COPY --from=binary /meshscope /usr/local/bin/meshscope
USER 65532:65532
# meshscope's defaults need no setting here, so a config file, a variable or a flag can
# change each: it listens on 0.0.0.0:11800 and 0.0.0.0:12800, and its data directory,
# `data` from the working directory, is the volume /data.
WORKDIR /
VOLUME ["/data"]
# 11800: gRPC, Envoy's access log and metrics services; 12800: HTTP, the API and dashboard.
EXPOSE 11800 12800
# meshscope writes its open minutes on SIGTERM within about 45 s: give `docker stop` -t 60.
STOPSIGNAL SIGTERM
LABEL org.opencontainers.image.title="meshscope" \
      org.opencontainers.image.description="Service mesh topology and observability backend for Envoy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENTRYPOINT ["/usr/local/bin/meshscope"]
CMD ["serve"]
