#!/bin/sh
# Entrypoint of the managed plugin: choose the iptables backend, then exec `pynet ARGS...`.
#
# Why: a managed plugin brings its own iptables binaries. pynet's rules only work if they land in the same
# backend (nf_tables or legacy x_tables) as dockerd's, whose FORWARD policy is DROP; a legacy pynet chain
# next to an nft DROP policy (or the reverse) silently drops the traffic. Legacy mode just uses the host's
# `iptables`, which is the one dockerd uses. Here we look at which backend already holds rules (dockerd
# writes its chains at start, before it enables plugins), the way Kubernetes' iptables-wrapper does.
#
# PYNET_IPTABLES=auto (default) | nft | legacy
set -eu

count_rules() {
    # Lines that are rules ("-A ...") in either family; a backend the kernel cannot serve counts 0.
    { "iptables-$1-save" 2>/dev/null; "ip6tables-$1-save" 2>/dev/null; } | grep -c '^-' || true
}

backend="${PYNET_IPTABLES:-auto}"
if [ "$backend" = auto ]; then
    if [ "$(count_rules legacy)" -gt "$(count_rules nft)" ]; then backend=legacy; else backend=nft; fi
fi
case "$backend" in
    nft|legacy) ;;
    *) echo "pynet-entrypoint: PYNET_IPTABLES must be auto, nft or legacy, not '$backend'" >&2; exit 2 ;;
esac
for tool in iptables ip6tables; do
    update-alternatives --quiet --set "$tool" "/usr/sbin/$tool-$backend" >/dev/null
done
echo "pynet-entrypoint: iptables backend $backend" >&2

exec /opt/pynet/bin/pynet "$@"
