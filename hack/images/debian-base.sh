#!/usr/bin/env bash
# Makes the Debian root file system featurekube's images start from, without Docker:
# `debootstrap --variant=minbase`, then BASE_PACKAGES installed in a chroot, and a
# non-root user (IMAGE_UID) to run as. Cached outside the work tree, keyed by
# versions.env and this script, so a fresh clone (CI's) reuses an earlier build.
#
# Prints the root file system's directory on stdout; progress goes to stderr.
# FEATUREKUBE_CACHE overrides the cache root (default ~/.cache/featurekube).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

key=$(cat "$here/versions.env" "$here/debian-base.sh" | sha256sum | cut -c1-16)
cache_root=${FEATUREKUBE_CACHE:-$HOME/.cache/featurekube}
out="$cache_root/debian-$DEBIAN_SUITE-$key"
if [ -x "$out/rootfs/usr/bin/python3" ]; then echo "$out/rootfs"; exit 0; fi

if ! command -v debootstrap >/dev/null; then
  echo "installing Debian package: debootstrap" >&2
  apt-get install -y --no-install-recommends debootstrap >&2 || {
    apt-get update >&2 && apt-get install -y --no-install-recommends debootstrap >&2; }
fi

rm -rf "$out.partial"
mkdir -p "$out.partial"
root="$out.partial/rootfs"
echo "making a Debian $DEBIAN_SUITE base into $out (first time only; about a minute)" >&2
debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" >&2
cp /etc/resolv.conf "$root/etc/resolv.conf"
# /proc for apt inside the chroot, in a mount namespace of its own so that the mount
# goes away with it and the machine's mounts never change.
unshare --mount --propagation private -- sh -c "
  mount -t proc proc '$root/proc'
  chroot '$root' /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive sh -c '
    apt-get update -qq &&
    apt-get install -y -qq --no-install-recommends $BASE_PACKAGES >/dev/null &&
    apt-get clean && rm -rf /var/lib/apt/lists/* &&
    groupadd --gid $IMAGE_UID featurekube &&
    useradd --uid $IMAGE_UID --gid $IMAGE_UID --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin featurekube'
" >&2
: > "$root/etc/resolv.conf"
# Publish atomically: a build killed half-way never looks finished.
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out/rootfs"
