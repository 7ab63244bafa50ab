#!/usr/bin/env bash
# Builds the root Dockerfile with podman and smoke-runs the image without a container engine:
# the image's entrypoint runs chrooted into a mount of the image as the image's user, then the
# script checks /healthz, /readyz, the image's HEALTHCHECK, gRPC health, one streamed sequence
# (compared with sluice-run offline), /metrics, and a clean SIGTERM drain.
# Needs root (mount, chroot), podman, debootstrap (scripts/setup.sh installs them); without them
# it fails rather than skip, so a CI run cannot pass it by accident.
# Env: SMOKE_IMAGE (default localhost/sluice:smoke), SMOKE_BUILD_ARGS (e.g. "WITH_POCL=1"),
#      SMOKE_SERVER_FLAGS (e.g. "--backend=opencl --opencl_device=cpu"), SMOKE_PODMAN_OPTS
#      (e.g. "--storage-driver vfs"), SMOKE_MIRROR (debootstrap mirror).
# A run killed with SIGKILL (ctest timeout) leaves a container labelled sluice-smoke behind
# (podman rm -f $(podman ps -aq --filter label=sluice-smoke)); a build interrupted by any signal
# can leave buildah working containers (podman ps -a --external).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
IMAGE="${SMOKE_IMAGE:-localhost/sluice:smoke}"
MIRROR="${SMOKE_MIRROR:-http://deb.debian.org/debian}"
BASE=docker.io/library/debian:bookworm
BASE_SLIM=docker.io/library/debian:bookworm-slim
DEFAULT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
read -r -a PODMAN_OPTS <<<"${SMOKE_PODMAN_OPTS:-}"
read -r -a BUILD_ARGS <<<"${SMOKE_BUILD_ARGS:-}"
read -r -a SERVER_FLAGS <<<"${SMOKE_SERVER_FLAGS:-}"

START=$SECONDS
log() { printf '[smoke %4ds] %s\n' "$((SECONDS - START))" "$*"; }
pm() { podman "${PODMAN_OPTS[@]}" "$@"; }

if [[ $(id -u) -ne 0 ]]; then log "FAIL: needs root (mount, chroot)"; exit 1; fi
for tool in podman debootstrap curl python3 chroot; do
  if ! command -v "$tool" >/dev/null; then log "FAIL: $tool not installed"; exit 1; fi
done
if ! pm info >/dev/null 2>&1; then
  log "FAIL: 'podman info' fails; set SMOKE_PODMAN_OPTS (e.g. --storage-driver vfs)"
  exit 1
fi

WORK="$(mktemp -d /var/tmp/sluice-smoke.XXXXXX)"
server_pid=""
ctr=""
mounts=()

cleanup() {
  local rc=$?
  set +e
  if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -KILL "$server_pid"
    wait "$server_pid" 2>/dev/null
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}"; done
  # debootstrap leaves /proc etc. mounted in its target if interrupted.
  grep -o " $WORK/[^ ]*" /proc/mounts | sort -r | xargs -r umount -l
  if [[ -n $ctr ]]; then
    pm umount "$ctr" >/dev/null
    pm rm -f "$ctr" >/dev/null 2>&1 # it warns about systemd healthcheck timers
  fi
  rm -rf "$WORK"
  if ((rc == 0)); then
    log "PASS ($((SECONDS - START)) s)"
  else
    log "FAIL (exit $rc, $((SECONDS - START)) s)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  log "FAIL: $*"
  exit 1
}

# What the official -slim images drop (debuerreotype --slimify), so the measured size is close.
slimify() {
  local rootfs=$1
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
  find "$rootfs/usr/share/doc" -depth -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{groff,info,linda,locale,man}/* "$rootfs"/usr/share/lintian/overrides/*
}

# 1. Base images, made locally once: no registry is reachable.
if pm image exists "$BASE" && pm image exists "$BASE_SLIM"; then
  log "base images $BASE, $BASE_SLIM: cached"
else
  log "debootstrap --variant=minbase bookworm ($MIRROR)"
  rootfs="$WORK/rootfs"
  if ! debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
    tail -20 "$WORK/debootstrap.log"
    fail "debootstrap"
  fi
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  # The same PATH and CMD as the official images.
  changes=(--change "ENV PATH=$DEFAULT_PATH" --change 'CMD ["bash"]')
  tar -C "$rootfs" -c . | pm import -q "${changes[@]}" - "$BASE" >/dev/null
  slimify "$rootfs"
  tar -C "$rootfs" -c . | pm import -q "${changes[@]}" - "$BASE_SLIM" >/dev/null
  rm -rf "$rootfs"
  log "imported $BASE and $BASE_SLIM"
fi

# 2. The image. --format docker keeps HEALTHCHECK (OCI images drop it).
build_cmd=(pm build --pull=never --isolation=chroot --format docker --layers -t "$IMAGE")
for arg in "${BUILD_ARGS[@]}"; do build_cmd+=(--build-arg "$arg"); done
log "podman build -t $IMAGE ${BUILD_ARGS[*]} (log: steps only)"
if ! "${build_cmd[@]}" -f "$ROOT/Dockerfile" "$ROOT" 2>&1 | tee "$WORK/build.log" | sed -un '/STEP [0-9]/s/^/  /p'; then
  tail -40 "$WORK/build.log"
  fail "podman build"
fi
log "image $IMAGE: $(pm image inspect --format '{{.Size}}' "$IMAGE" | numfmt --to=si)B"

# 3. Run the entrypoint in a mounted (never started) container, as the image would.
ctr="$(pm create --label sluice-smoke "$IMAGE")"
mnt="$(pm mount "$ctr")"
for dir in proc dev sys; do
  mount --bind "/$dir" "$mnt/$dir"
  mounts+=("$mnt/$dir")
done
# Scratch space for the client's input and outputs, writable by the image's user.
user="$(pm image inspect --format '{{.Config.User}}' "$IMAGE")"
[[ $user =~ ^[0-9]+:[0-9]+$ ]] || fail "image user '$user' is not numeric uid:gid"
[[ ${user%%:*} != 0 ]] || fail "image runs as root"
mkdir -p "$WORK/io" "$mnt/smoke"
chown "$user" "$WORK/io"
mount --bind "$WORK/io" "$mnt/smoke"
mounts+=("$mnt/smoke")

mapfile -t entrypoint < <(pm image inspect --format '{{range .Config.Entrypoint}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t image_env < <(pm image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
mapfile -t healthcheck < <(pm image inspect --format '{{range .HealthCheck.Test}}{{println .}}{{end}}' "$IMAGE" | sed '/^$/d')
workdir="$(pm image inspect --format '{{.Config.WorkingDir}}' "$IMAGE")"
home="$(awk -F: -v uid="${user%%:*}" '$3 == uid { print $6 }' "$mnt/etc/passwd")"
# Like an engine: a default PATH and HOME from /etc/passwd unless the image's ENV sets them.
in_image=(chroot --userspec="$user" "$mnt" /usr/bin/env -i -C "${workdir:-/}" "PATH=$DEFAULT_PATH"
  "HOME=${home:-/}" "${image_env[@]}")

read -r grpc_port http_port < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
log "start ${entrypoint[*]} as $user on 127.0.0.1 (gRPC $grpc_port, HTTP $http_port)"
"${in_image[@]}" "${entrypoint[@]}" --host=127.0.0.1 --grpc_port="$grpc_port" \
  --http_port="$http_port" --drain_timeout_s=5 "${SERVER_FLAGS[@]}" >"$WORK/server.log" 2>&1 &
server_pid=$!

server_failed() {
  log "server log (tail):"
  tail -30 "$WORK/server.log" | sed 's/^/  /'
  fail "$*"
}
http="http://127.0.0.1:$http_port"
for ((i = 0; ; i++)); do
  kill -0 "$server_pid" 2>/dev/null || server_failed "server exited during startup"
  if curl -fsS -o /dev/null "$http/readyz" 2>/dev/null; then break; fi
  # PoCL (WITH_POCL=1) compiles every model's kernels before it is ready.
  ((i < 720)) || server_failed "not ready after 180 s"
  sleep 0.25
done
log "ready after $((i / 4)) s: $(sed -n 's/.*model \([^ ]*\) ready: [^ ]* instance(s) on \([^ ,]*\).*/\1 on \2/p' "$WORK/server.log" | paste -sd ,)"

# 4. Checks.
check() {
  local what=$1
  shift
  if "$@" >"$WORK/check.out" 2>&1; then
    log "ok   $what"
  else
    sed 's/^/  /' "$WORK/check.out" | tail -20
    server_failed "$what"
  fi
}
check "/healthz is ok" bash -c "curl -fsS '$http/healthz' | grep -qx ok"
check "/readyz lists tick_lstm" bash -c "curl -fsS '$http/readyz' | grep -q tick_lstm"
((${#healthcheck[@]} >= 2)) || fail "image has no HEALTHCHECK"
# The HEALTHCHECK targets the default port 8000; this server listens on $http_port.
hc=("${healthcheck[@]:1}")
hc=("${hc[@]//8000/$http_port}")
[[ ${healthcheck[0]} != CMD-SHELL ]] || hc=(/bin/sh -c "${hc[*]}")
check "HEALTHCHECK (${hc[*]})" "${in_image[@]}" "${hc[@]}"
check "sluice-client health" "${in_image[@]}" sluice-client health --server="127.0.0.1:$grpc_port"

python3 - "$WORK/io/x.npy" <<'PY'
# float32 [1, 50, 8] (tick_lstm's offline layout), written without numpy.
import math, struct, sys
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 50, 8), }"
header += " " * (63 - (10 + len(header)) % 64) + "\n"
with open(sys.argv[1], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
    f.write(struct.pack("<400f", *(math.sin(0.1 * i) for i in range(400))))
PY
chown "$user" "$WORK/io/x.npy"
check "sluice-client stream tick_lstm (50 frames)" "${in_image[@]}" sluice-client stream \
  --server="127.0.0.1:$grpc_port" --model=tick_lstm --input=/smoke/x.npy --output=/smoke/y.npy
check "sluice-run offline reference" "${in_image[@]}" sluice-run \
  --model=/models/tick_lstm/model.onnx --input=/smoke/x.npy --output=/smoke/y_ref.npy
check "streamed outputs == offline outputs (1e-4)" python3 - "$WORK/io/y.npy" "$WORK/io/y_ref.npy" <<'PY'
import struct, sys
def load(path):  # float32 little-endian .npy; the shape string must match too
    data = open(path, "rb").read()
    n = struct.unpack("<H", data[8:10])[0]
    body = data[10 + n:]
    return data[10:10 + n], struct.unpack(f"<{len(body) // 4}f", body)
(h1, y), (h2, ref) = load(sys.argv[1]), load(sys.argv[2])
diff = max(abs(a - b) for a, b in zip(y, ref))
print(f"headers {h1!r} / {h2!r}, max |diff| {diff}")
sys.exit(0 if h1 == h2 and len(y) == len(ref) > 0 and diff <= 1e-4 else 1)
PY
check "/metrics counts the 50 frames" bash -c \
  "curl -fsS '$http/metrics' | grep -E '^sluice_frames_total\\{.*model=\"tick_lstm\".*\\} 50\$'"

# 5. SIGTERM drains and exits 0.
kill -TERM "$server_pid"
for ((i = 0; i < 60; i++)); do
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.25
done
kill -0 "$server_pid" 2>/dev/null && server_failed "still running 15 s after SIGTERM"
rc=0
wait "$server_pid" || rc=$?
server_pid=""
((rc == 0)) || server_failed "exit code $rc after SIGTERM"
log "ok   SIGTERM: drained, exit 0"
