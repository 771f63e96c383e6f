# The mixed job: unpack a source tree and checksum every file, with busybox applets only.
# Usage: busybox sh mixed.sh TARBALL WORKDIR   (WORKDIR is created and removed)
set -e
busybox rm -rf "$2"
busybox mkdir -p "$2"
busybox tar xf "$1" -C "$2"
busybox find "$2" -type f | busybox xargs busybox md5sum > /dev/null
busybox rm -rf "$2"
