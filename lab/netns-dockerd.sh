#!/bin/sh
# Prepare a private mount namespace for one test dockerd, then exec a command in it.
#
# Run as:  ip netns exec NS unshare -m --propagation slave sh netns-dockerd.sh CMD [ARGS...]
# (typically CMD is "sleep infinity": the "anchor" whose mount namespace every start of this
# host's dockerd later enters with nsenter, so dockerd restarts keep the same view, like a real host).
#
# Environment:
#   PN_CGROUP_MOUNTS  file with lines "fstype mountpoint options" read from the parent's /proc/mounts
#   PN_PLUGINS_DIR    per-host dir bind-mounted over /run/docker/plugins (legacy plugin discovery)
#   PN_ETC_DOCKER     per-host dir bind-mounted over /etc/docker (key.json, daemon.json never touch the host)
#   PN_READY          file touched once everything is mounted
set -eu

: "${PN_CGROUP_MOUNTS:?}" "${PN_PLUGINS_DIR:?}" "${PN_ETC_DOCKER:?}" "${PN_READY:?}"

# Nothing we mount may propagate back to the host (slave: host umounts, e.g. `ip netns del`, still
# propagate in, so this namespace does not pin other netns files that existed when it was made).
mount --make-rslave /

# 1. cgroups. `ip netns exec` remounted /sys for the netns, which dropped /sys/fs/cgroup/*; replay them.
if [ -s "$PN_CGROUP_MOUNTS" ]; then
    while read -r fstype target opts; do
        case "$target" in /sys/fs/cgroup) ;; /sys/fs/cgroup/*) ;; *) continue ;; esac
        mkdir -p "$target" 2>/dev/null || true
        case "$fstype" in
            tmpfs)   mount -t tmpfs -o "$opts" tmpfs "$target" ;;
            cgroup)  mount -t cgroup -o "$opts" cgroup "$target" ;;
            cgroup2) mount -t cgroup2 -o "$opts" cgroup2 "$target" ;;
            *) echo "netns-dockerd: skipping $fstype on $target" >&2 ;;
        esac
    done < "$PN_CGROUP_MOUNTS"
fi

# 2. /run/docker: private tmpfs (libnetwork sockets etc.), with the per-host plugins dir as plugins/.
mount -t tmpfs -o mode=755 tmpfs /run/docker
mkdir -p /run/docker/plugins
mount --bind "$PN_PLUGINS_DIR" /run/docker/plugins

# 3. /run/containerd: private tmpfs, so dockerd never finds a system containerd socket and starts its
#    own managed containerd under its exec-root; shim sockets (/run/containerd/s/...) land here too.
mount -t tmpfs -o mode=711 tmpfs /run/containerd

# 4. /etc/docker: per-host (dockerd 20.10 writes key.json there).
mount --bind "$PN_ETC_DOCKER" /etc/docker

touch "$PN_READY"
exec "$@"
