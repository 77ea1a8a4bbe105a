"""The online store's layout, shared by the job that writes it, the feature server that
reads it, and the operator that creates its tables."""
