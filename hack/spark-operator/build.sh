#!/usr/bin/env bash
# Builds the Kubeflow Spark Operator (one binary: `controller start`, `webhook start`)
# from its Go module into a cache outside the work tree, keyed by this module's go.mod
# and go.sum, so a fresh clone (CI's) reuses an earlier build and a version change
# rebuilds. hack/images/build.py packs it onto the Spark image as the spark-operator
# image.
#
# Prints the directory holding the binary on stdout; progress goes to stderr.
# FEATUREKUBE_CACHE overrides the cache root (default ~/.cache/featurekube).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-16)
cache_root=${FEATUREKUBE_CACHE:-$HOME/.cache/featurekube}
out="$cache_root/spark-operator-$SPARK_OPERATOR_VERSION-$key"

if [ -x "$out/spark-operator" ]; then echo "$out"; exit 0; fi

pkg=k8s.io/component-base/version
ldflags="-s -w -X $pkg.gitVersion=$SPARK_OPERATOR_VERSION -X $pkg.gitTreeState=clean"
ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"

mkdir -p "$out.partial"
echo "building the Spark Operator $SPARK_OPERATOR_VERSION into $out (first time only; about 10 minutes on 2 busy cores)" >&2
cd "$here"
export CGO_ENABLED=0
# nice and -p 1: one compile at a time at the lowest priority, so a build leaves the
# machine's two cores to the tests running beside it.
nice -n 19 go build -p 1 -trimpath -ldflags "$ldflags" -o "$out.partial/spark-operator" \
  github.com/kubeflow/spark-operator/v2/cmd/operator
# Publish atomically: a build killed half-way never looks finished.
rm -rf "$out" && mv "$out.partial" "$out"
echo "$out"
