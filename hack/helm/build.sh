#!/usr/bin/env bash
# Builds helm from its Go module into a cache outside the work tree, keyed by this
# module's go.mod and go.sum, so a fresh clone (CI's) reuses an earlier build and a
# version change rebuilds. Same pattern as hack/k8s/build.sh.
#
# Prints the path of the helm binary on stdout; progress goes to stderr.
# FEATUREKUBE_CACHE overrides the cache root (default ~/.cache/featurekube).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
cache_root=${FEATUREKUBE_CACHE:-$HOME/.cache/featurekube}
out="$cache_root/helm-$HELM_VERSION-$key"
if [ -x "$out/helm" ]; then echo "$out/helm"; exit 0; fi

cd "$here"
major=$(echo "$HELM_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
pkg="helm.sh/helm/v$major"
# `helm version`, and the Kubernetes version `helm template` and `helm lint` assume
# without a cluster, as helm's own Makefile sets them (the latter from client-go's).
client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
k8s_minor=$(echo "$client_go" | sed -E 's/^v0\.([0-9]+)\..*/\1/')
ldflags="-s -w -X $pkg/internal/version.version=$HELM_VERSION"
ldflags+=" -X $pkg/internal/version.gitTreeState=clean"
for p in "$pkg/pkg/lint/rules" "$pkg/pkg/chartutil"; do
  ldflags+=" -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$k8s_minor"
done

mkdir -p "$out.partial"
echo "building helm $HELM_VERSION into $out (first time only; several minutes on 2 cores)" >&2
export CGO_ENABLED=0
# -p 2: this machine has two cores; more parallel compiles only add memory pressure.
go build -p 2 -trimpath -ldflags "$ldflags" -o "$out.partial/helm" "$pkg/cmd/helm"
# Publish atomically: a build killed half-way never looks finished.
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out/helm"
