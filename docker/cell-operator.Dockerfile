# cell-operator: multi-stage (build with the Rust toolchain, run on slim Debian), non-root.
#   docker build -f docker/cell-operator.Dockerfile -t cell-operator .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cell-operator --bins \
 && mkdir -p /out && cp target/release/cell-operator target/release/crdgen /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mrbill
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/cell-operator"]
