#!/usr/bin/env bash
# The runtime image's root filesystem, made from Debian's packages with mmdebstrap: the C
# library and libgcc (all a meshscope binary links to), a `meshscope` user (65532) that
# owns /data, and nothing else: no shell, no package manager. Used by the Dockerfile's
# `rootfs` stage and by scripts/image, so both images start from the same files.
#
#   deploy/image/rootfs.sh SUITE OUT.tar [MIRROR]
#
# SUITE is a Debian release (bookworm, trixie). MIRROR defaults to mmdebstrap's own: Debian's
# archive, with the updates and security suites added for a stable release.
set -euo pipefail

suite=${1:?usage: rootfs.sh SUITE OUT.tar [MIRROR]}
out=${2:?usage: rootfs.sh SUITE OUT.tar [MIRROR]}
mirror=()
if [ -n "${3:-}" ]; then mirror=("$3"); fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

# extract + chrootless: packages are only unpacked (no maintainer scripts run, as none of
# these two needs one), so this needs no mounts and no privileges beyond writing files, and
# runs the same in a container build as on a host.
mmdebstrap --quiet --variant=extract --mode=chrootless \
  --skip=output/dev --skip=output/mknod \
  --include=libc6,libgcc-s1 "$suite" "$root" "${mirror[@]}"

cd "$root"
# What a server that runs one binary never reads: documentation, translations, character
# set converters (gconv, 8 MB: meshscope speaks UTF-8 only), apt's and dpkg's state (empty
# after an extract) and the files a container runtime provides itself.
rm -rf usr/share/doc usr/share/man usr/share/info usr/share/locale usr/share/lintian \
  usr/lib/*-linux-gnu/gconv etc/apt var dev etc/hostname etc/resolv.conf etc/fstab
mkdir -p etc data tmp
printf 'root:x:0:0:root:/root:/sbin/nologin\nmeshscope:x:65532:65532:meshscope:/data:/sbin/nologin\n' >etc/passwd
printf 'root:x:0:\nmeshscope:x:65532:\n' >etc/group
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >etc/nsswitch.conf
chown 65532:65532 data
chmod 0750 data
chmod 1777 tmp
cd - >/dev/null
tar --numeric-owner --sort=name -C "$root" -cf "$out" .
