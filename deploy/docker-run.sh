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
    --pid=host --cgroupns=host --network=host \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN \
    --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH --cap-add KILL \
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
    -v /sys/fs/bpf:/sys/fs/bpf \
    -v /sys/fs/cgroup:/sys/fs/cgroup \
    -v /sys/kernel:/sys/kernel:ro \
    -v /var/lib/docker:/var/lib/docker:ro,rslave \
    -v /var/run/docker.sock:/var/run/docker.sock \
    -v /etc/seawall:/etc/seawall:ro \
    -v /var/lib/seawall:/var/lib/seawall \
    -v /run/seawall:/run/seawall \
    --stop-timeout 30 \
    "$image" agent --pin --config /etc/seawall/agent.toml
