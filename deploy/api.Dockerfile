# syntax=docker/dockerfile:1
# The api container: built from the repository root.
#   docker buildx build --platform linux/arm64 -f deploy/api.Dockerfile -t <ecr url>:<tag> --push .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package api \
 && cp target/release/api /api

# glibc and libgcc only, no shell, runs as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /api /usr/local/bin/api
USER nonroot:nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/api"]
