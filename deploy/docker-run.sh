#!/bin/sh
# Runs the Seawall agent as a container on this Docker host. See deploy/README.md for each flag.
#
#   SEAWALL_IMAGE=seawall:0.1.0 deploy/docker-run.sh
#
# Before the first run: put agent.toml and profiles/ in /etc/seawall (see INSTALL.md).
set -eu

image="${SEAWALL_IMAGE:-seawall:latest}"

if [ ! -f /etc/seawall/agent.toml ]; then
    echo "docker-run.sh: /etc/seawall/agent.toml is missing; see INSTALL.md" >&2
    exit 1
fi
mkdir -p /var/lib/seawall /run/seawall

exec docker run --detach --name seawall --restart unless-stopped \
    --privileged --pid=host --cgroupns=host --network=host \
    -v /sys/fs/bpf:/sys/fs/bpf \
    -v /sys/kernel:/sys/kernel:ro \
    -v /var/run/docker.sock:/var/run/docker.sock \
    -v /etc/seawall:/etc/seawall:ro \
    -v /var/lib/seawall:/var/lib/seawall \
    -v /run/seawall:/run/seawall \
    --stop-timeout 30 \
    "$image" agent --config /etc/seawall/agent.toml
