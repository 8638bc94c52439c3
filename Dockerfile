# syntax=docker/dockerfile:1
#
# xflow container image: the static binary and an example configuration.
#
#   make image                        # docker build, tagged xflow:dev (the tag deploy/kubernetes names)
#   make image IMAGE=REGISTRY/xflow:TAG
#
# make image passes what `xflow version` and xflow_build_info report as
# build arguments (scripts/buildinfo.sh --build-args): .git is not in the
# build context (.dockerignore), so Go cannot record the revision itself.
# A plain `docker build -t xflow:dev .` works too; its `xflow version` then
# says the revision is unknown.
#
# No clang: the eBPF objects (bpf/xflow_bpfel.o and its Go bindings) are
# committed, and `go build` embeds them.
#
# BuildKit (the default builder since Docker 23) is assumed: the build stage
# runs on the build platform and cross-compiles for the target.
#
# Running it needs the host's network namespace, the host's bpffs and
# CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, as in deploy/kubernetes/daemonset.yaml.
# bpffs is mounted at /host/sys/fs/bpf, not /sys/fs/bpf: the runtimes'
# default AppArmor profile forbids writes below /sys/fs/bpf inside a container.
# With `pin_path: /host/sys/fs/bpf/xflow` in your xflow.yaml:
#
#   docker run -d --name xflow --network host --read-only \
#     --cap-drop ALL --cap-add BPF --cap-add NET_ADMIN --cap-add PERFMON \
#     --tmpfs /run/xflow:mode=0700 -v /sys/fs/bpf:/host/sys/fs/bpf \
#     -v "$PWD/xflow.yaml:/etc/xflow/xflow.yaml:ro" xflow:dev
#   docker exec xflow xflow flows --pin-path /host/sys/fs/bpf/xflow
#
# (Docker's default seccomp profile allows bpf(2) with CAP_BPF since 23.0.)

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS
ARG TARGETARCH
# scripts/buildinfo.sh --build-args; empty: not recorded.
ARG VERSION=
ARG REVISION=
ARG COMMIT_TIME=
ARG MODIFIED=
ARG BUILD_TIME=
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Static (no cgo: the pure-Go resolver reads /etc/resolv.conf); the committed
# objects are little-endian, so amd64, arm64 and other little-endian
# targets build from the same source.
RUN BI=github.com/xflow-net/xflow/internal/buildinfo && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X $BI.version=${VERSION} -X $BI.revision=${REVISION} -X $BI.commitTime=${COMMIT_TIME} -X $BI.modified=${MODIFIED} -X $BI.buildTime=${BUILD_TIME}" \
      -o /out/xflow ./cmd/xflow

# distroless/static: no shell, no package manager, CA certificates (for TLS
# collectors), /etc/passwd. Runs as uid 0, but only with the capabilities
# the runtime grants (drop ALL, add the three above).
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/xflow /usr/local/bin/xflow
COPY xflow.yaml /etc/xflow/xflow.yaml
USER 0:0
ENTRYPOINT ["/usr/local/bin/xflow"]
CMD ["run", "-c", "/etc/xflow/xflow.yaml"]
