#!/usr/bin/env bash
# Builds the node's runtime parts into a cache outside the work tree, keyed by the
# pinned versions and the wrapper modules, so a fresh clone (CI's) reuses an earlier
# build and a version change rebuilds:
#   containerd, ctr, containerd-shim-runc-v2  (hack/node/containerd)
#   cni/bridge, host-local, loopback, portmap (hack/node/cni)
#   coredns                                   (hack/node/coredns)
#   pause                                     (kubernetes' own build/pause/linux/pause.c)
#   probe                                     (hack/node/probe: the node tests' workload)
# and installs the Debian packages the node runs with (runc, nftables) when missing.
# kubelet, kube-proxy and kube-scheduler come from hack/k8s/build.sh.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
# FEATUREKUBE_CACHE overrides the cache root (default ~/.cache/featurekube).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"
# shellcheck source=../k8s/versions.env
. "$here/../k8s/versions.env"

# runc runs the containers; kube-proxy programs nftables through the nft command.
missing=""
command -v runc >/dev/null || [ -x /usr/sbin/runc ] || missing+=" runc"
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing+=" nftables"
if [ -n "$missing" ]; then
  echo "installing Debian packages:$missing" >&2
  apt-get install -y --no-install-recommends $missing >&2 || {
    apt-get update >&2 && apt-get install -y --no-install-recommends $missing >&2; }
fi

key=$(cat "$here/versions.env" "$here/../k8s/versions.env" "$here/build.sh" \
  "$here"/*/go.mod "$here"/*/go.sum "$here"/*/*.go | sha256sum | cut -c1-16)
cache_root=${FEATUREKUBE_CACHE:-$HOME/.cache/featurekube}
out="$cache_root/node-$key"
bins="containerd ctr containerd-shim-runc-v2 coredns pause probe cni/bridge cni/host-local cni/loopback cni/portmap"

done_already=1
for b in $bins; do [ -x "$out/$b" ] || done_already=0; done
if [ "$done_already" = 1 ]; then echo "$out"; exit 0; fi

mkdir -p "$out.partial/cni"
echo "building containerd $CONTAINERD_VERSION, CNI plugins $CNI_PLUGINS_VERSION and CoreDNS $COREDNS_VERSION into $out (first time only; about 5 minutes on 2 cores)" >&2
export CGO_ENABLED=0
# -p 2: this machine has two cores; more parallel compiles only add memory pressure.
cd "$here/containerd"
pkg=github.com/containerd/containerd/v2
ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=github.com/containerd/containerd"
go build -p 2 -trimpath -tags "urfave_cli_no_docs no_btrfs" -ldflags "$ldflags" -o "$out.partial/" \
  $pkg/cmd/containerd $pkg/cmd/ctr
# The shim is built without grpc as upstream releases it: it is started per pod.
go build -p 2 -trimpath -tags "urfave_cli_no_docs no_grpc" -ldflags "$ldflags" -o "$out.partial/" \
  $pkg/cmd/containerd-shim-runc-v2
cd "$here/cni"
pkg=github.com/containernetworking/plugins
go build -p 2 -trimpath -o "$out.partial/cni/" \
  -ldflags "-s -w -X $pkg/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
  $pkg/plugins/main/bridge $pkg/plugins/ipam/host-local $pkg/plugins/main/loopback $pkg/plugins/meta/portmap
cd "$here/coredns"
go build -p 2 -trimpath -ldflags "-s -w" -o "$out.partial/coredns" .
cd "$here/probe"
go build -p 2 -trimpath -ldflags "-s -w" -o "$out.partial/probe" .
# The pause container's binary, from the pinned Kubernetes release's own source.
k8s_dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')
gcc -Os -Wall -Werror -static -DVERSION="v${PAUSE_IMAGE##*:}-$K8S_VERSION" \
  -o "$out.partial/pause" "$k8s_dir/build/pause/linux/pause.c"
# Publish atomically: a build killed half-way never looks finished.
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out"
