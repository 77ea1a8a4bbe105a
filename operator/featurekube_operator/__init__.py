"""featurekube operator."""
