# syntax=docker/dockerfile:1
# promptq in a container: built with the official Rust image, run on distroless (glibc, CA
# certificates, a non-root user, no shell: about 25 MB plus the binary).
#
#   docker build -t promptq .
#   docker run -p 3000:3000 -e CRON_SECRET=$(openssl rand -hex 32) -v promptq-data:/data promptq
#
# See docs/docker.md. Needs BuildKit (the default builder since Docker 23) for the cache mounts.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# build.rs links the release binary with packed relocations and with the functions a process
# runs laid out together (build/symbol-order.txt, written for this toolchain): less of it is
# resident in each process.
COPY Cargo.toml Cargo.lock build.rs ./
COPY build build
COPY src src
COPY migrations migrations
# The manifest names this optional binary (feature `vercel`); it is not built here.
COPY api api
# The registry and target caches survive between builds, so a change in src/ recompiles promptq
# only, not its dependencies. The binary is copied out because cache mounts are not in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin promptq \
 && cp target/release/promptq /usr/local/bin/promptq \
 && mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/promptq /usr/local/bin/promptq
# The embedded database's home, writable by the non-root user (mount a volume here).
COPY --from=build --chown=nonroot:nonroot /data /data
ENV DATABASE_URL=sqlite:/data/promptq.db \
    BIND=0.0.0.0:3000 \
    LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3000
# `serve` refuses to listen on 0.0.0.0 without CRON_SECRET: set it at run time, never here.
# It stops on SIGTERM (docker stop), handing running jobs back within SHUTDOWN_GRACE_SECS.
ENTRYPOINT ["/usr/local/bin/promptq"]
CMD ["serve"]
