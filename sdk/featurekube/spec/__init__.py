"""Feature definitions as Kubernetes resources: the models the CRDs are generated from.

Pure data and validation; no I/O. This package imports no other part of featurekube
but :mod:`featurekube.errors`, and none of pyspark, grpc, duckdb or kopf, so reading a
definition never needs a compute engine.
"""
