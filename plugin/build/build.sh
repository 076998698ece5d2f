#!/usr/bin/env bash
# Build pynet's managed-plugin directory (config.json + rootfs/) for `docker plugin create`.
#
#   plugin/build/build.sh [--base IMAGE|debootstrap] [--output DIR] [--cache DIR] [--mirror URL]
#
# Steps: a base image -> wheels of pynet and its dependencies (built here, on the host) -> `docker build`
# with the repository's Dockerfile -> `docker create` + `docker export` into DIR/rootfs -> config.json.
#
# --base debootstrap (the default) needs no registry: a minimal Debian bookworm with python3, iptables and
#   iproute2 is debootstrapped on this host (root, `apt-get install debootstrap`), trimmed, and imported
#   with `docker import`. Any image name (e.g. python:3.11-slim-bookworm) is used as it is instead.
# The docker commands go to the daemon DOCKER_HOST points to (the default one if unset). The rootfs image
# is built on that daemon, so the build needs no network of its own: PyPI (for the wheels) and the Debian
# mirror (for debootstrap) are reached from this host.
#
# Cache (--cache, $PYNET_BUILD_CACHE, default /var/cache/pynet-build): the debootstrapped base tarball,
# keyed by the recipe below, and the wheels, keyed by pyproject.toml and the source tree. Delete the
# directory to start cold.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
SUITE=bookworm
# What the base must contain; changing it (or BASE_RECIPE) changes the cache key.
INCLUDE=python3,python3-venv,iptables,iproute2,ca-certificates
BASE_RECIPE=2

base=${BASE:-debootstrap}
output=$REPO/build/pynet-plugin
cache=${PYNET_BUILD_CACHE:-/var/cache/pynet-build}
mirror=${PYNET_DEBIAN_MIRROR:-}
python=${PYTHON:-}
docker=${DOCKER:-docker}
# The classic builder: it needs no buildx plugin and never looks for a BuildKit frontend in a registry.
export DOCKER_BUILDKIT=${DOCKER_BUILDKIT:-0}

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
log() { printf 'build: %s\n' "$*" >&2; }
die() { printf 'build: error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --output|-o) output=$2; shift 2 ;;
        --cache) cache=$2; shift 2 ;;
        --mirror) mirror=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "unknown argument: $1" >&2; usage 2 ;;
    esac
done

hash_of() { sha256sum | cut -c1-16; }

# ------------------------------------------------------------------------------------------ the base
# The Debian mirror this host's apt already uses (sources.list or deb822 .sources), else deb.debian.org.
apt_mirror() {
    local url
    url=$(awk -v s="$SUITE" '$1 == "deb" && $0 ~ " " s " " { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
          /etc/apt/sources.list 2>/dev/null || true)
    if [[ -z $url ]]; then
        # deb822: the URIs of the first stanza whose Suites list the suite itself (not -security/-updates)
        url=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v s="$SUITE" '
            /^$/ { if (ok && uri) { print uri; exit } ok = 0; uri = "" }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok = 1 }
            END { if (ok && uri) print uri }' | head -1)
    fi
    echo "${url:-http://deb.debian.org/debian}"
}

# Everything a plugin never needs at run time: package lists and archives, docs (but the copyright
# files), man pages, locales, logs, glibc's iconv modules (Python has its own codecs; 9 MB), and the
# stdlib's bytecode (14 MB; the build writes back what pip imports, Python the rest on first start).
trim_rootfs() {
    local root=$1
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
           "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
           "$root"/usr/share/lintian "$root"/var/log/* "$root"/tmp/*
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    find "$root/usr/share/doc" -type d -empty -delete
    find "$root"/usr/lib/python3* -name __pycache__ -prune -exec rm -rf {} +
    find "$root"/usr/lib/*-linux-gnu/gconv -name '*.so' -delete
}

# Debootstrap + trim + tar, once per recipe; the tarball stays in the cache.
debootstrap_tarball() {
    local tarball=$1 dir
    command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap (or use --base IMAGE)"
    [[ $(id -u) -eq 0 ]] || die "debootstrap needs root (or use --base IMAGE)"
    [[ -n $mirror ]] || mirror=$(apt_mirror)
    dir=$(mktemp -d "$cache/rootfs.XXXXXX")
    log "debootstrap $SUITE from $mirror (--include=$INCLUDE); about a minute"
    if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$dir" "$mirror" >"$dir.log" 2>&1; then
        tail -20 "$dir.log" >&2
        rm -rf "$dir"
        die "debootstrap failed (log above)"
    fi
    trim_rootfs "$dir"
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir" "$dir.log"
}

# Sets base_image: the debootstrapped base, imported into the target daemon unless already there.
ensure_debootstrap_base() {
    local key tarball
    key=$(printf '%s\n' "$SUITE" "$INCLUDE" "$BASE_RECIPE" "$(uname -m)" | hash_of)
    tarball=$cache/base-$SUITE-$key.tar
    base_image=pynet-base:$SUITE-$key
    if [[ ! -f $tarball ]]; then
        (flock 9; [[ -f $tarball ]] || debootstrap_tarball "$tarball") 9>"$cache/.base.lock"
    fi
    if ! "$docker" image inspect "$base_image" >/dev/null 2>&1; then
        log "docker import $base_image"
        "$docker" import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            "$tarball" "$base_image" >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------- the wheels
pick_python() {
    local cand
    for cand in "$python" "$REPO/.venv/bin/python" "${VIRTUAL_ENV:+$VIRTUAL_ENV/bin/python}" python3; do
        [[ -n $cand ]] && "$cand" -m pip --version >/dev/null 2>&1 && { python=$cand; return; }
    done
    die "no python with pip found (set PYTHON=...)"
}

# The base's Python (X.Y): wheels with compiled parts (MarkupSafe) must match it, not this host's.
base_python_version() {
    "$docker" run --rm --network none --entrypoint python3 "$base_image" \
        -c 'import sys; print("%d.%d" % sys.version_info[:2])'
}

# pynet's own wheel, keyed by everything that goes into it. Built from a copy of those files: setuptools
# would otherwise work in the repository's build/, where stale modules from an older tree get packaged.
project_files() {
    # Every file the wheel is built from, as setup.py derives them (the one list of what ships).
    (cd "$REPO" && "$python" setup.py sources | tr '\n' '\0' | LC_ALL=C sort -z)
}

project_wheel() {
    local key dir src
    key=$(project_files | (cd "$REPO" && xargs -0 cat) | hash_of)
    dir=$cache/project-$key
    if [[ ! -d $dir ]]; then
        log "pip wheel pynet ($key)"
        src=$(mktemp -d "$cache/src.XXXXXX")
        project_files | (cd "$REPO" && xargs -0 cp --parents -t "$src")
        rm -rf "$dir.tmp.$$"
        "$python" -m pip wheel -q --no-deps --wheel-dir "$dir.tmp.$$" "$src" >&2
        rm -rf "$src"
        mv -T "$dir.tmp.$$" "$dir" 2>/dev/null || rm -rf "$dir.tmp.$$"  # lost a race: same content
    fi
    # every source edit makes a new one: forget those not used for a day
    find "$cache" -maxdepth 1 -name 'project-*' ! -name "project-$key" -mtime +1 -exec rm -rf {} +
    touch "$dir"
    echo "$dir"
}

# The dependencies (and pip, which the Dockerfile runs from its wheel), as binary wheels for the base's
# Python and this machine's architecture.
dependency_wheels() {
    local pyver=$1 key dir reqs arch
    arch=$(uname -m)
    reqs=$("$python" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
           "$REPO/pyproject.toml")
    reqs="$reqs"$'\n'pip
    key=$(printf '%s\n' "$reqs" "$pyver" "$arch" | hash_of)
    dir=$cache/deps-$key
    if [[ ! -d $dir ]]; then
        log "pip download dependencies for Python $pyver ($key)"
        rm -rf "$dir.tmp.$$"
        mkdir -p "$dir.tmp.$$"
        printf '%s\n' "$reqs" >"$dir.tmp.$$/requirements.txt"
        "$python" -m pip download -q --only-binary=:all: --dest "$dir.tmp.$$" \
            --python-version "$pyver" --implementation cp --abi "cp${pyver/./}" \
            --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" --platform "manylinux_2_28_$arch" \
            -r "$dir.tmp.$$/requirements.txt" >&2
        mv -T "$dir.tmp.$$" "$dir" 2>/dev/null || rm -rf "$dir.tmp.$$"
    fi
    echo "$dir"
}

# Copies both wheel sets into the build context, in a directory of this build's own (removed at exit), and
# prints its path relative to the repository. Docker's build cache keys COPY by content, not by path.
stage_wheels() {
    local rel=build/wheels/$$
    rm -rf "${REPO:?}/$rel"
    mkdir -p "$REPO/$rel"
    cp -p "$1"/*.whl "$2"/*.whl "$REPO/$rel/"  # -p: the legacy builder keys COPY by mtime too
    echo "$rel"
}

# --------------------------------------------------------------------------------- the plugin dir
export_plugin_dir() {
    local image=$1 tmp id
    tmp=$output.tmp.$$
    rm -rf "$tmp"
    mkdir -p "$tmp/rootfs"
    id=$("$docker" create "$image")
    if ! "$docker" export "$id" | tar -x --numeric-owner -C "$tmp/rootfs"; then
        "$docker" rm -f "$id" >/dev/null
        rm -rf "$tmp"
        die "docker export failed"
    fi
    "$docker" rm -f "$id" >/dev/null
    mkdir -p "$tmp/rootfs/run/docker/plugins"  # where dockerd mounts the plugin's socket dir
    cp "$REPO/config.json" "$tmp/config.json"
    rm -rf "$output"
    mv "$tmp" "$output"
}

main() {
    local start=$SECONDS wheels_rel pyver image project deps
    mkdir -p "$cache"
    cache=$(cd "$cache" && pwd)
    mkdir -p "$(dirname "$output")"
    output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")
    pick_python
    "$docker" version >/dev/null 2>&1 || die "cannot reach a docker daemon${DOCKER_HOST:+ at $DOCKER_HOST} (set DOCKER_HOST)"
    if [[ $base == debootstrap ]]; then
        ensure_debootstrap_base
    else
        base_image=$base
    fi
    pyver=$(base_python_version) || die "cannot run python3 in $base_image"
    project=$(project_wheel)
    deps=$(dependency_wheels "$pyver")
    wheels_rel=$(stage_wheels "$project" "$deps")
    # shellcheck disable=SC2064  # expand now: wheels_rel is local to main
    trap "rm -rf '$REPO/$wheels_rel'" EXIT
    image=pynet-rootfs:latest
    log "docker build (BASE=$base_image, Python $pyver)"
    if ! "$docker" build -t "$image" --build-arg "BASE=$base_image" --build-arg "WHEELS=$wheels_rel" \
            -f "$REPO/Dockerfile" "$REPO" >"$cache/docker-build.$$.log" 2>&1; then
        tail -30 "$cache/docker-build.$$.log" >&2
        rm -f "$cache/docker-build.$$.log"
        die "docker build failed (log above)"
    fi
    rm -f "$cache/docker-build.$$.log"
    export_plugin_dir "$image"
    log "plugin dir $output: rootfs $(du -sm "$output/rootfs" | cut -f1) MB, $((SECONDS - start)) s"
    echo "$output"
}

main
