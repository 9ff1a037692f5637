#!/usr/bin/env bash
# Build vantage6nb's Docker images offline and push them to the local registry, idempotently.
#
#   v6nb/base:<suite>       debootstrap --variant=minbase of the host's Debian suite, from the mirror in
#                           apt's sources, with python3, pip and socat (socat is the proxy side-car relay)
#   v6nb/python:<version>   base + pandas, numpy, requests, pyarrow, openpyxl + this repo's wheel,
#                           non-root user 10001; the parent of every algorithm image
#   v6nb/summary:<version>, v6nb/crosstab:<version>, v6nb/diagnostics:<version>,
#   v6nb/glm:<version>, v6nb/cox:<version>, and the statistics
#   pack v6nb/table1, v6nb/ttest, v6nb/correlation, v6nb/survival (:<version>)
#                           the shipped algorithms (PKG_NAME set; label org.vantage6nb.functions:
#                           their functions' roles, from `python3 -m vantage6nb.algorithm --describe`)
#
# Everything is pushed to $REGISTRY (default 127.0.0.1:5000), as :<version> and :latest, and the
# digests are printed.
# Downloads (wheels, rootfs tarball) are cached under $V6NB_CACHE (default /var/cache/v6nb).
# Usage: scripts/build-images.sh [--force] [--base-only] [--no-push]
set -euo pipefail
shopt -s inherit_errexit

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${V6NB_CACHE:-/var/cache/v6nb}"
REGISTRY="${V6NB_REGISTRY_ADDR:-127.0.0.1:5000}"
FORCE=0
BASE_ONLY=0
PUSH=1
for arg in "$@"; do
    case "$arg" in
    --force) FORCE=1 ;;
    --base-only) BASE_ONLY=1 ;;
    --no-push) PUSH=0 ;;
    -h | --help)
        sed -n '2,16p' "$0"
        exit 0
        ;;
    *)
        echo "build-images: unknown option '$arg' (try --help)" >&2
        exit 2
        ;;
    esac
done

log() { printf '[build-images %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
t0=$(date +%s)
mkdir -p "$CACHE"

docker info >/dev/null 2>&1 || {
    log "no Docker engine answers: run scripts/setup-docker.sh first"
    exit 1
}

# shellcheck disable=SC1091
SUITE="${V6NB_SUITE:-$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")}"
VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$ROOT/vantage6nb/_version.py")"
BASE_IMAGE="v6nb/base:$SUITE"
PY_IMAGE="v6nb/python:$VERSION"
ALGORITHMS="summary crosstab diagnostics glm cox"  # vantage6nb/algorithms/<name>.py -> v6nb/<name>
ALGORITHMS="$ALGORITHMS table1 ttest correlation survival"  # the statistics pack

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

debian_mirror() {
    # The first Debian mirror apt uses for the suite itself (not -security): deb822 or one-line format.
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '
            /^[[:space:]]*$/ { if (u != "" && s ~ "(^| )" suite "( |$)") { print u; exit } u = ""; s = "" }
            /^URIs:/ { u = $2 }
            /^Suites:/ { $1 = ""; s = $0 " " }
            END { if (u != "" && s ~ "(^| )" suite "( |$)") print u }' "$f" | head -n1)
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '$1 == "deb" && $0 !~ /\[/ && $3 == suite { print $2; exit }
                                     $1 == "deb" && $0 ~ /\[/ { for (i = 2; i <= NF; i++) if ($i ~ /\]$/) break;
                                                               if ($(i + 2) == suite) { print $(i + 1); exit } }' "$f")
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    return 1
}

build_base() {
    if [ "$FORCE" -eq 0 ] && image_exists "$BASE_IMAGE"; then
        log "$BASE_IMAGE exists (use --force to rebuild)"
        return
    fi
    local tarball="$CACHE/rootfs-$SUITE.tar"
    if [ "$FORCE" -eq 1 ] || [ ! -s "$tarball" ]; then
        command -v debootstrap >/dev/null 2>&1 || {
            log "installing debootstrap"
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
                -o DPkg::Lock::Timeout=900 debootstrap >/dev/null
        }
        local mirror
        mirror=$(debian_mirror) || {
            log "no Debian mirror for suite '$SUITE' in apt's sources; set V6NB_SUITE or fix /etc/apt/sources.list"
            exit 1
        }
        local rootfs="$CACHE/rootfs-$SUITE"
        rm -rf "$rootfs"
        log "debootstrap --variant=minbase $SUITE from $mirror (a few minutes)"
        debootstrap --variant=minbase --include=python3,python3-pip,socat "$SUITE" "$rootfs" "$mirror" \
            >"$CACHE/debootstrap.log" 2>&1 || {
            log "debootstrap failed; see $CACHE/debootstrap.log:"
            tail -n 20 "$CACHE/debootstrap.log" >&2
            exit 1
        }
        # Slim the root filesystem: package caches and docs are not needed at run time.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        tar -C "$rootfs" -cf "$tarball.partial" .
        mv "$tarball.partial" "$tarball"
        rm -rf "$rootfs"
    else
        log "using cached $tarball"
    fi
    log "docker import -> $BASE_IMAGE"
    docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$tarball" "$BASE_IMAGE" >/dev/null
    docker tag "$BASE_IMAGE" v6nb/base:latest
}

container_python() {
    docker run --rm --network none "$BASE_IMAGE" python3 -c \
        'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")'
}

make_wheels() {
    # Wheels for the container's Python: host Python when the versions match, else cross-download.
    local pyver host_pyver dir="$CACHE/wheels/py$1"
    pyver="$1"
    host_pyver=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    mkdir -p "$dir"
    local reqs=(pandas numpy requests pyarrow openpyxl)
    if [ "$FORCE" -eq 1 ] || [ ! -f "$dir/.complete" ]; then
        log "downloading wheels for Python $pyver into $dir"
        local extra=()
        if [ "$pyver" != "$host_pyver" ]; then
            extra=(--python-version "$pyver" --implementation cp
                --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
                --platform manylinux2014_x86_64 --platform any)
        fi
        python3 -m pip download --quiet --only-binary=:all: "${extra[@]}" -d "$dir" "${reqs[@]}" \
            2>"$CACHE/pip-download.log" || {
            log "pip download failed; see $CACHE/pip-download.log"
            tail -n 20 "$CACHE/pip-download.log" >&2
            exit 1
        }
        touch "$dir/.complete"
    else
        log "using cached wheels in $dir"
    fi
    # This repository's wheel changes with the source: always rebuild it (a few seconds).
    rm -f "$dir"/vantage6nb-*.whl
    repo_wheel "$dir"
    echo "$dir"
}

repo_wheel() {
    # Build from a copy so the checkout gets no build/ or egg-info droppings.
    local src
    src=$(mktemp -d)
    cp -r "$ROOT/pyproject.toml" "$ROOT/vantage6nb" "$ROOT/server_app" "$ROOT/node_app" "$src/"
    [ -f "$ROOT/README.md" ] && cp "$ROOT/README.md" "$src/"
    find "$src" -name __pycache__ -prune -exec rm -rf {} +
    python3 -m pip wheel --quiet --no-deps -w "$1" "$src" >"$CACHE/pip-wheel.log" 2>&1 || {
        log "building this repository's wheel failed; see $CACHE/pip-wheel.log"
        tail -n 20 "$CACHE/pip-wheel.log" >&2
        exit 1
    }
    rm -rf "$src"
}

build_from_context() {
    # build_from_context IMAGE WHEELDIR [--build-arg ...]
    local image="$1" wheels="$2"
    shift 2
    local ctx
    ctx=$(mktemp -d)
    cp "$ROOT/scripts/docker/algorithm.Dockerfile" "$ctx/Dockerfile"
    mkdir "$ctx/wheels" "$ctx/app"
    cp "$wheels"/*.whl "$ctx/wheels/"
    mv "$ctx/wheels"/vantage6nb-*.whl "$ctx/app/"
    # Keep the dependency layer cacheable: same file times for the same wheels.
    touch -d @0 "$ctx/wheels" "$ctx/wheels"/*.whl
    log "docker build --network none -> $image"
    docker build --quiet --force-rm --network none -t "$image" --build-arg "BASE=$BASE_IMAGE" "$@" "$ctx" \
        >"$CACHE/docker-build.log" 2>&1 || {
        log "docker build of $image failed; see $CACHE/docker-build.log:"
        tail -n 20 "$CACHE/docker-build.log" >&2
        exit 1
    }
    rm -rf "$ctx"
}

build_python_and_algorithms() {
    local pyver wheels
    pyver=$(container_python)
    wheels=$(make_wheels "$pyver")
    # The runtime image holds the kit; rebuild when the repo wheel changed (the build cache makes an
    # unchanged rebuild cheap), so the shipped algorithms are always the checked-out ones.
    build_from_context "$PY_IMAGE" "$wheels"
    docker tag "$PY_IMAGE" v6nb/python:latest
    local name module
    for name in $ALGORITHMS; do
        module="vantage6nb.algorithms.$name"
        if [ ! -f "$ROOT/vantage6nb/algorithms/$name.py" ]; then
            log "missing $ROOT/vantage6nb/algorithms/$name.py: cannot build v6nb/$name"
            exit 1
        fi
        # The roles of its functions (@federated, @entry_point), read by the node from this label.
        # The host Python describes the checked-out source, the same the image's wheel holds.
        local ctx functions
        functions=$(cd "$ROOT" && PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
            python3 -m vantage6nb.algorithm --describe "$module") || {
            log "cannot describe $module (python3 -m vantage6nb.algorithm --describe $module)"
            exit 1
        }
        case "$functions" in *"'"*)  # JSON of identifiers and role names never has one
            log "describe of $module printed a single quote: $functions"
            exit 1
            ;;
        esac
        ctx=$(mktemp -d)
        {
            # V6NB_WRAPPER: ours, decided here once instead of by every run (built_on_vantage6)
            printf 'FROM %s\nENV PKG_NAME=%s V6NB_WRAPPER=vantage6nb\nLABEL org.vantage6nb.algorithm=%s\n' \
                "$PY_IMAGE" "$module" "$name"
            printf "LABEL org.vantage6nb.functions='%s'\n" "$functions"  # single quotes: taken literally
        } >"$ctx/Dockerfile"
        docker build --quiet --force-rm --network none -t "v6nb/$name:$VERSION" "$ctx" \
            >"$CACHE/docker-build.log" 2>&1 || {
            log "docker build of v6nb/$name failed; see $CACHE/docker-build.log"
            exit 1
        }
        docker tag "v6nb/$name:$VERSION" "v6nb/$name:latest"
        rm -rf "$ctx"
        log "built v6nb/$name:$VERSION"
    done
}

push_all() {
    local img ref digest
    local images=("$BASE_IMAGE" "$PY_IMAGE") name
    for name in $ALGORITHMS; do images+=("v6nb/$name:$VERSION"); done
    for img in "${images[@]}"; do
        image_exists "$img" || continue
        ref="$REGISTRY/$img"
        docker tag "$img" "$ref"
        docker push --quiet "$ref" >/dev/null
        # :latest too, so a node that pins nothing pulls the newest build of an unversioned name.
        docker tag "$img" "$REGISTRY/${img%%:*}:latest"
        docker push --quiet "$REGISTRY/${img%%:*}:latest" >/dev/null
        digest=$(docker image inspect --format '{{range .RepoDigests}}{{println .}}{{end}}' "$ref" |
            grep "^$REGISTRY/${img%%:*}@" | head -n1)
        printf '%s\t%s\n' "$ref" "$digest"
    done
}

tb=$(date +%s)
build_base
log "base image ready in $(($(date +%s) - tb)) s"
if [ "$BASE_ONLY" -eq 0 ]; then
    tb=$(date +%s)
    build_python_and_algorithms
    log "algorithm images ready in $(($(date +%s) - tb)) s"
fi
if [ "$PUSH" -eq 1 ]; then
    curl -fsS -o /dev/null "http://$REGISTRY/v2/" || {
        log "no registry answers on $REGISTRY: run scripts/setup-docker.sh first"
        exit 1
    }
    push_all
fi
log "done in $(($(date +%s) - t0)) s"
