# mrbill-router: multi-stage (build with the Rust toolchain, run on slim Debian), non-root.
# Built with the workspace's `router` profile (whole-program optimised: see Cargo.toml).
#   docker build -f docker/mrbill-router.Dockerfile -t mrbill-router .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile router --locked -p mrbill-router --bin mrbill-router \
 && mkdir -p /out && cp target/router/mrbill-router /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mrbill
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mrbill-router"]
