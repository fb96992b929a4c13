#!/usr/bin/env bash
# Build the one image lbgen's tests and demo run (proxies and backends alike), without a registry:
# debootstrap a minimal Debian 12 root with nginx (and its stream module, for TCP services), haproxy, python3,
# busybox (the Alpine replicas' /bin/sh) and sshd (the ssh:// DOCKER_HOST tests),
# then `docker import` it.
# The tag carries a hash of this folder, so a rebuild happens only when the recipe changes.
# Prints the image tag on stdout.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
mirror=${LBGEN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
hash=$(cat "$here/build.sh" "$here/backend.py" "$here/haproxy.cfg" | sha256sum | cut -c1-12)
tag="lbgen-test:$hash"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi
work=$(mktemp -d /var/tmp/lbgen-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "building $tag (debootstrap from $mirror; takes a few minutes once)" >&2
debootstrap --variant=minbase --include=nginx-light,libnginx-mod-stream,haproxy,python3,busybox,openssh-server \
  bookworm "$work/root" "$mirror" >&2
root="$work/root"
rm -f "$root/etc/nginx/sites-enabled/default"
# No host keys baked into the image: an sshd container gets the ones its test makes (ssh-keygen -A otherwise).
rm -f "$root"/etc/ssh/ssh_host_*
# openssh-server's system user and group took uid/gid 101, which the official nginx image's nginx user has
# (tests/images/official/nginx): move them out of the way (ssh-agent is setgid _ssh).
chroot "$root" usermod --uid 990 sshd
chroot "$root" groupmod --gid 990 _ssh
chroot "$root" chgrp _ssh /usr/bin/ssh-agent
chmod 2755 "$root/usr/bin/ssh-agent"
mkdir -p "$root/run/sshd"
install -m 0755 "$here/backend.py" "$root/usr/local/bin/lbgen-test-backend"
# The official haproxy image reads /usr/local/etc/haproxy/haproxy.cfg; do the same.
install -D -m 0644 "$here/haproxy.cfg" "$root/usr/local/etc/haproxy/haproxy.cfg"
chroot "$root" apt-get clean
rm -rf "$root/var/lib/apt/lists"/* "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/locale" \
  "$root/var/cache/debconf"/*-old "$root/var/log"/*.log
tar --numeric-owner -C "$root" -c . | docker import \
  --change 'CMD ["/usr/local/bin/lbgen-test-backend"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  - "$tag" >&2
docker tag "$tag" lbgen-test:latest >&2
echo "$tag"
