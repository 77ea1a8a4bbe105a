"""Where the feature server reads online values from, and writes pushed rows to.

:mod:`~featurekube_server.stores.base` defines the interfaces; backends are chosen by
name from :data:`~featurekube_server.stores.base.BACKENDS`-style maps in the server.
"""
