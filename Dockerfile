# sluice-server image: built on debian:bookworm with the project's own setup script, run on
# debian:bookworm-slim as a non-root user serving the bundled models/ from /models.
#   docker build -t sluice .        podman build --format docker -t sluice .
#   docker run -p 8000:8000 -p 8001:8001 sluice [sluice-server flags...]
# Build args: WITH_POCL=1 adds PoCL (an OpenCL CPU device); INTEL_FPGA_RTE=<tarball in the build
# context> adds an Intel FPGA OpenCL runtime; BUILD_JOBS caps compile jobs. See README "Docker".

FROM debian:bookworm AS build
ARG DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# Only the setup script first, so the package layer survives source edits.
COPY scripts/setup.sh scripts/setup.sh
RUN bash scripts/setup.sh --build-only
COPY . .
ARG BUILD_JOBS=
ARG INTEL_FPGA_RTE=
# The ccache mount keeps rebuilds after a source edit incremental (BuildKit and buildah).
RUN --mount=type=cache,target=/ccache \
    export CCACHE_DIR=/ccache \
 && cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_ENABLE_TESTS=OFF \
      -DSLUICE_ENABLE_FPGA="$(if [ -n "$INTEL_FPGA_RTE" ]; then echo ON; else echo OFF; fi)" \
 && cmake --build build -j"${BUILD_JOBS:-$(nproc)}" --target sluice-server sluice-client sluice-run \
 && strip build/bin/sluice-server build/bin/sluice-client build/bin/sluice-run

FROM debian:bookworm-slim
ARG DEBIAN_FRONTEND=noninteractive
ARG WITH_POCL=0
# Runtime libraries of the three binaries (ldd + dpkg -S); curl (~5 MB with its libraries) for
# HEALTHCHECK and `docker exec ... curl`. apt's own caches would add ~75 MB.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libabsl20220623 libspdlog1.10 libfmt9 libonnx1 \
      libcpp-httplib0.11 ocl-icd-libopencl1 curl \
      $(if [ "$WITH_POCL" = 1 ]; then echo pocl-opencl-icd; fi) \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*

# Intel FPGA SDK for OpenCL runtime + board MMD (cannot be downloaded; bring your own tarball,
# layout in README "Docker"): registered as an OpenCL ICD so --backend auto finds the card.
ARG INTEL_FPGA_RTE=
RUN --mount=type=bind,target=/context \
    if [ -n "$INTEL_FPGA_RTE" ]; then \
      set -e; \
      mkdir -p /opt/intelFPGA /etc/OpenCL/vendors /opt/Intel/OpenCL/Boards; \
      tar -xzf "/context/$INTEL_FPGA_RTE" -C /opt/intelFPGA; \
      lib="$(find /opt/intelFPGA -name libalteracl.so -print -quit)"; \
      [ -n "$lib" ] || { echo "INTEL_FPGA_RTE: no libalteracl.so in $INTEL_FPGA_RTE" >&2; exit 1; }; \
      echo "$lib" > /etc/OpenCL/vendors/Altera.icd; \
      find /opt/intelFPGA -type d -path '*/linux64/lib' > /etc/ld.so.conf.d/intel-fpga.conf; \
      find /opt/intelFPGA -name '*.fcd' -exec cp {} /opt/Intel/OpenCL/Boards/ \; ; \
      ldconfig; \
    fi

COPY --from=build /src/build/bin/sluice-server /src/build/bin/sluice-client \
     /src/build/bin/sluice-run /usr/local/bin/
# A missing runtime library fails the build here rather than at `docker run`.
RUN ! ldd /usr/local/bin/sluice-server /usr/local/bin/sluice-client /usr/local/bin/sluice-run \
      | grep 'not found'
COPY models /models

RUN useradd --uid 10001 --user-group --create-home --home-dir /home/sluice --shell /usr/sbin/nologin sluice
# Numeric, so Kubernetes' runAsNonRoot can verify it. The caches (OpenCL programs, PoCL) must be
# writable by this user.
USER 10001:10001
WORKDIR /home/sluice
ENV POCL_CACHE_DIR=/home/sluice/.cache/pocl

EXPOSE 8000 8001
# Liveness on the default HTTP port; with another --http_port, override it (--health-cmd).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/healthz"]
# Extra `docker run IMAGE --flag=...` arguments are appended; a repeated flag's last value wins.
ENTRYPOINT ["/usr/local/bin/sluice-server", "--model_repository=/models"]
