"""The web catalog (``featurekube ui``): find features, see who owns them and whether
they are healthy; read-only.

Pure modules build what a page shows from the live objects; two modules do I/O:

- :mod:`~featurekube.catalog.model`: FeatureViews and FeatureServices -> page data (pure).
- :mod:`~featurekube.catalog.search`: the in-memory search index and its queries (pure).
- :mod:`~featurekube.catalog.lineage`: source -> view -> services -> readers as SVG (pure).
- :mod:`~featurekube.catalog.metrics`: a feature server's Prometheus figures (pure).
- :mod:`~featurekube.catalog.pages`: HTML, every user string escaped (pure).
- :mod:`~featurekube.catalog.cluster`: what the kubeconfig's identity may list, cached (I/O).
- :mod:`~featurekube.catalog.server`: the aiohttp application, GET only (I/O).
"""
