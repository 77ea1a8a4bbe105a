#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kubectl, etcd and the node's
# kubelet, kube-proxy and kube-scheduler from Go modules
# into a cache outside the work tree, keyed by this module's go.mod and go.sum, so a
# fresh clone (CI's) reuses an earlier build and a version change rebuilds.
#
# Prints the directory holding the binaries on stdout; progress goes to stderr.
# FEATUREKUBE_CACHE overrides the cache root (default ~/.cache/featurekube).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
cache_root=${FEATUREKUBE_CACHE:-$HOME/.cache/featurekube}
out="$cache_root/k8s-$K8S_VERSION-$key"
bins="kube-apiserver kube-controller-manager kubectl etcd kubelet kube-proxy kube-scheduler"

done_already=1
for b in $bins; do [ -x "$out/$b" ] || done_already=0; done
if [ "$done_already" = 1 ]; then echo "$out"; exit 0; fi

major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

mkdir -p "$out.partial"
echo "building Kubernetes $K8S_VERSION and etcd into $out (first time only; 15-40 minutes on 2 cores)" >&2
cd "$here"
export CGO_ENABLED=0
# -p 2: this machine has two cores; more parallel compiles only add memory pressure.
go build -p 2 -trimpath -ldflags "$ldflags" -o "$out.partial/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kube-scheduler
go build -p 2 -trimpath -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3
# Publish atomically: a build killed half-way never looks finished.
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out"
