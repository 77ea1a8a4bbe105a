"""The local platform: real Kubernetes API, S3, DynamoDB, started on loopback.

Used by `featurekube dev up|down|env` and by the test suite's session fixtures; never
deployed anywhere. Its parts:

- :mod:`.pki`: certificates and keys for the API server and its users (pure);
- :mod:`.components`: the command line and readiness check of each process (pure);
- :mod:`.kubeconfig`: kubeconfig documents (pure);
- :mod:`.processes`: starting, watching and stopping background processes (I/O);
- :mod:`.node_config`: the optional real node's addresses, configs and manifests (pure);
- :mod:`.node`: the node's namespaces, files, images and clean-up (I/O);
- :mod:`.oci`: one-layer OCI image archives written from a directory (I/O);
- :mod:`.platform`: puts them together into a platform with a state directory (I/O).
"""
