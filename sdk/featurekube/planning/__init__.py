"""Planning an apply of feature definitions: what it would change in the cluster, and
what it would break.

- :mod:`featurekube.planning.diff` is pure: desired objects and live objects in, a
  :class:`~featurekube.planning.diff.Plan` out (create / change with a field-level
  diff / unchanged / delete, and the breaking changes with their reasons).
- :mod:`featurekube.planning.cluster` is the only I/O: it reads the live FeatureViews
  and FeatureServices through the Kubernetes API.

This package imports neither on its own, so that using the pure half does not load
the Kubernetes client.
"""
