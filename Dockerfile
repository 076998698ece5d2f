# The managed plugin's root filesystem. Build it with `make plugin` (plugin/build/build.sh), which also turns
# the image into the plugin directory (config.json + rootfs/) that `docker plugin create` takes.
#
# BASE is any Debian-like image with python3 (>= 3.11) and its venv module:
# - python:3.11-slim-bookworm where a registry is reachable (iptables and iproute2 come from apt below);
# - pynet-base:bookworm-<hash>, a debootstrapped Debian the build script imports where none is: it already
#   has iptables and iproute2, because a build on a daemon without an uplink cannot run apt-get.
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

# Python wheels of pynet, its dependencies and pip itself, built on the build host (no PyPI needed in here).
ARG WHEELS=build/wheels
COPY ${WHEELS} /tmp/wheels
COPY plugin/build/entrypoint.sh /usr/local/bin/pynet-entrypoint

# One step, so the build commits one layer (it runs on every test daemon).
# - Run-time tools: iptables (the firewall; nft and legacy, see pynet-entrypoint) and iproute2 (to debug
#   from inside the plugin with `runc exec`; pynet itself speaks netlink through pyroute2).
# - setuptools only comes in because pbr (etcd3gw's version helper) declares it; nothing imports it at run
#   time, and its 7 MB would push the rootfs over its 150 MB budget.
# - A venv, so the same line works on Debian's python3 (externally managed) and the official images'. It is
#   made without pip and filled by pip run from its wheel: ensurepip would cost ~10 s and ~15 MB of rootfs.
RUN set -e; \
    if ! command -v iptables-nft >/dev/null || ! command -v ip >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends iptables iproute2 ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    python3 -m venv --without-pip /opt/pynet; \
    pip_wheel=$(ls /tmp/wheels/pip-*.whl); \
    /opt/pynet/bin/python "$pip_wheel/pip" install --no-cache-dir --no-index --find-links /tmp/wheels pynet-plugin; \
    /opt/pynet/bin/python "$pip_wheel/pip" uninstall -y -q setuptools; \
    /opt/pynet/bin/pynet version; \
    rm -rf /tmp/wheels; \
    chmod 0755 /usr/local/bin/pynet-entrypoint; \
    mkdir -p /run/docker/plugins /var/lib/pynet /etc/pynet

# Used only when the image is run as a container; as a plugin, config.json's entrypoint applies.
ENTRYPOINT ["/usr/local/bin/pynet-entrypoint"]
CMD ["serve"]
