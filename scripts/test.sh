#!/usr/bin/env bash
# Install everything the test suite needs (Python package, Docker engine + registry, images, rootless
# Podman, Chromium) and run it. This is the README's test command; .ci/run calls it with V6NB_REQUIRE_ALL=1.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== python package"
python3 -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== system packages"
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing ${need[*]}: install them (sudo apt-get install ${need[*]}) or run as root" >&2
  fi
fi

echo "== docker engine, registry and images"
if [ "$(id -u)" = 0 ]; then
  bash scripts/setup-docker.sh
  bash scripts/build-images.sh
else
  echo "not root: leaving Docker as it is (run scripts/setup-docker.sh and scripts/build-images.sh as root)"
fi

echo "== rootless podman (the Podman runtime's tests; images from the same registry)"
if [ "$(id -u)" = 0 ]; then
  bash scripts/setup-podman.sh
else
  echo "not root: leaving Podman as it is (run scripts/setup-podman.sh as root)"
fi

echo "== postgresql, rabbitmq and haproxy"
if [ "$(id -u)" = 0 ]; then
  bash scripts/setup-services.sh
  bash scripts/setup-haproxy.sh
else
  echo "not root: leaving PostgreSQL and RabbitMQ as they are (run scripts/setup-services.sh as root)"
fi

echo "== vantage6-algorithm-tools (cached venv and wheels for the vantage6 compatibility tests)"
bash scripts/setup-v6-tools.sh || echo "could not set up vantage6-algorithm-tools: those tests skip"

echo "== tests"
mkdir -p artifacts
python3 -m pytest tests notebooks --nbval-lax -p no:cacheprovider --durations=30 "$@"
