# dojo-service: multi-stage (build with the Rust toolchain, run on slim Debian), non-root.
#   docker build -f docker/dojo-service.Dockerfile -t dojo-service .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p dojo-service --bin dojo-service \
 && mkdir -p /out && cp target/release/dojo-service /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin mrbill
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/dojo-service"]
CMD ["serve"]
