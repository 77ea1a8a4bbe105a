"""featurekube feature server."""
