"""The offline store: one Delta table per view version on S3."""
