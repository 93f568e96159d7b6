# The cloudmigrate image: the controller, the worker of Jobs, and the command line, in one
# binary. Build it with
#   docker build -t ghcr.io/cloudmigrate/cloudmigrate:0.1.0 .
# The chart (charts/cloudmigrate) and the Job runner use this one image reference by default.

# Build stage: the release build, with the exact command of .ci/build-release.
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    .ci/build-release \
    && cp target/release/cloudmigrate /cloudmigrate

# Run stage: glibc and nothing else (rustls, no OpenSSL), as the non-root user 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /cloudmigrate /usr/local/bin/cloudmigrate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/cloudmigrate"]
CMD ["controller"]
