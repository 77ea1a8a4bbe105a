"""The ``featurekube`` command line; each subcommand group is a module of its own."""
