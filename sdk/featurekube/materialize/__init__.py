"""Materialization: one window of a FeatureView, from its batch source to its offline
Delta table and online DynamoDB table.

- :mod:`~featurekube.materialize.plan` (pure): what a window means — rows read,
  boundaries owned, columns needed.
- :mod:`~featurekube.materialize.aggregate` (pure): time-window aggregations of one
  entity's events.
- :mod:`~featurekube.materialize.tiles` (pure): per-interval partial aggregates and how
  they combine into the same rows; :mod:`~featurekube.materialize.moments` (pure): the
  exact sums they merge; :mod:`~featurekube.materialize.tile_store`: a version's tile
  table.
- :mod:`~featurekube.materialize.report` (pure): the run's JSON report and the
  expectations' verdicts.
- :mod:`~featurekube.materialize.spark_job`: runs a plan with Spark (the only module
  here that imports pyspark) and writes through :mod:`featurekube.writer`.
- :mod:`~featurekube.materialize.publish`: the order of a window's writes (pending
  record, online, the offline commit that publishes it, completion), so that no reader
  sees a window that is not complete in both stores.
- :mod:`~featurekube.materialize.monitor`: a published window's statistics and drift,
  stored beside its offline table (:mod:`featurekube.monitoring`); never fails the
  window.
- ``python -m featurekube.materialize``: the job's entry point, as the operator's
  SparkApplication runs it.

Importing this package loads no pyspark.
"""
