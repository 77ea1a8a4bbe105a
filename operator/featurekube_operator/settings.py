"""The operator's configuration, read once at start-up from the environment; no I/O
beyond reading ``os.environ``.

Every setting is an environment variable ``FEATUREKUBE_<NAME>`` (the chart sets them
from its values); units and defaults are documented on each field.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from featurekube import s3_prefixes
from featurekube.materialize import engines
from featurekube_operator import credentials

__all__ = ["OperatorSettings", "env_name"]

# Settings that the AWS SDKs read too keep the SDKs' names.
_ENV_NAMES = {"aws_region": "AWS_REGION", "aws_endpoint_url": "AWS_ENDPOINT_URL"}


def env_name(field_name: str) -> str:
    """The environment variable of a setting: ``FEATUREKUBE_<NAME>``, or AWS's own."""
    return _ENV_NAMES.get(field_name, f"FEATUREKUBE_{field_name.upper()}")


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator names, places and runs what it creates."""

    offline_uri: str = "s3://featurekube/offline"
    """Root of the offline store; a view's Delta table lives at
    ``<offline_uri>/<namespace>/<view>/v<version>``. Env: FEATUREKUBE_OFFLINE_URI."""

    table_prefix: str = "featurekube."
    """Prefix of every online DynamoDB table name. Env: FEATUREKUBE_TABLE_PREFIX."""

    spark_image: str = "ghcr.io/featurekube/spark:0.1.0"
    """Image of the Spark driver and executors. Env: FEATUREKUBE_SPARK_IMAGE."""

    spark_version: str = "4.2.0"
    """Spark version the image carries. Env: FEATUREKUBE_SPARK_VERSION."""

    spark_service_account: str = "featurekube-spark"
    """ServiceAccount of Spark drivers. Env: FEATUREKUBE_SPARK_SERVICE_ACCOUNT."""

    spark_main_file: str = "local:///opt/featurekube/materialize.py"
    """The job's entry point inside the image. Env: FEATUREKUBE_SPARK_MAIN_FILE."""

    spark_stream_main_file: str = "local:///opt/featurekube/stream.py"
    """The stream job's entry point inside the image.
    Env: FEATUREKUBE_SPARK_STREAM_MAIN_FILE."""

    spark_conf: Mapping[str, str] = field(default_factory=dict)
    """Extra Spark settings, as ``key=value`` pairs separated by commas.
    Env: FEATUREKUBE_SPARK_CONF."""

    python_max_rows: int = engines.DEFAULT_PYTHON_MAX_ROWS
    """With ``spec.materialization.engine: auto``, the most input rows a window may be
    estimated to read and still run on the python engine, in a Job; a larger window, or
    one of a version with no completed window yet to estimate from, runs as a
    SparkApplication. The estimate scales the rows the version's latest completed window
    read by the span of source time each reads. Env: FEATUREKUBE_PYTHON_MAX_ROWS."""

    python_image: str = ""
    """Image of the python engine's Jobs; it must have featurekube's Python at
    ``/opt/featurekube/venv/bin/python``, as the Spark image does. Empty: the Spark
    image. Env: FEATUREKUBE_PYTHON_IMAGE."""

    python_cpu: str = "1"
    """CPU a python engine Job requests (a Kubernetes quantity).
    Env: FEATUREKUBE_PYTHON_CPU."""

    python_memory: str = "4Gi"
    """Memory a python engine Job requests and is limited to (a Kubernetes quantity):
    room for the Arrow data of a window of python_max_rows rows.
    Env: FEATUREKUBE_PYTHON_MEMORY."""

    server_image: str = "ghcr.io/featurekube/feature-server:0.1.0"
    """Image of the gRPC feature server. Env: FEATUREKUBE_SERVER_IMAGE."""

    server_service_account: str = "featurekube-feature-server"
    """Default ServiceAccount of feature-server pods. Env: FEATUREKUBE_SERVER_SERVICE_ACCOUNT."""

    server_tls_secret: str = ""
    """A ``kubernetes.io/tls`` Secret, in each namespace where feature servers run, whose
    certificate they serve gRPC with: one for ``*.<namespace>.svc`` fits every service
    there. Empty: plaintext, for local development only. The chart sets
    ``featurekube-serving-tls``. Env: FEATUREKUBE_SERVER_TLS_SECRET."""

    server_auth: str = "none"
    """How feature servers know their callers: ``tokenreview``, by ServiceAccount tokens
    the Kubernetes API reviews, allowed by each FeatureService's ``spec.access``;
    ``none``, anyone may call, for local development only. The chart sets
    ``tokenreview``. Env: FEATUREKUBE_SERVER_AUTH."""

    server_metrics_namespaces: str = ""
    """Namespaces, separated by commas, that a feature server's NetworkPolicy lets reach
    its metrics port (Prometheus'); empty: none. Env: FEATUREKUBE_SERVER_METRICS_NAMESPACES."""

    max_windows_in_flight: int = 2
    """Materialization windows of one view running at once.
    Env: FEATUREKUBE_MAX_WINDOWS_IN_FLIGHT."""

    backfill_window_seconds: int = 86400
    """Longest window a backfill runs as one job, in seconds (ticks of the schedule are
    merged up to this span). Env: FEATUREKUBE_BACKFILL_WINDOW_SECONDS."""

    retry_backoff_seconds: float = 30.0
    """Wait before the first retry of a failed window; doubles each attempt.
    Env: FEATUREKUBE_RETRY_BACKOFF_SECONDS."""

    max_retry_backoff_seconds: float = 1800.0
    """Longest wait between retries. Env: FEATUREKUBE_MAX_RETRY_BACKOFF_SECONDS."""

    max_failed_attempts: int = 3
    """Attempts at a window whose failure cannot heal by running it again (a Fail
    expectation, a schema error, an item over the store's size limit) before it is no
    longer retried and the view is Degraded with reason TooManyFailures; transient
    failures are retried with backoff for as long as they last.
    Env: FEATUREKUBE_MAX_FAILED_ATTEMPTS."""

    succeeded_history_limit: int = 3
    """Completed SparkApplications and Jobs kept per view once their outcome is in the view's
    status, newest first; older ones are deleted (the status is the record, not they).
    Env: FEATUREKUBE_SUCCEEDED_HISTORY_LIMIT."""

    failed_history_limit: int = 1
    """Failed SparkApplications and Jobs kept per view once their outcome is in the view's status.
    Env: FEATUREKUBE_FAILED_HISTORY_LIMIT."""

    version_retention_seconds: float = 604800.0
    """How long a version nothing uses any more (not serving, not the latest, pinned by
    no FeatureService) keeps its online table and offline data before they are deleted,
    in seconds; only for views with deletionPolicy Delete, whose spec.versionRetention
    overrides it. Default: 7 days. Env: FEATUREKUBE_VERSION_RETENTION_SECONDS."""

    reconcile_interval_seconds: float = 30.0
    """How often each view is re-examined for due windows.
    Env: FEATUREKUBE_RECONCILE_INTERVAL_SECONDS."""

    aws_region: str = "us-east-1"
    """Region of DynamoDB and S3. Env: AWS_REGION."""

    aws_endpoint_url: str = ""
    """An endpoint serving S3 and DynamoDB instead of AWS (LocalStack, say), passed on to
    the jobs and feature servers it starts; empty: AWS. Env: AWS_ENDPOINT_URL."""

    aws_credentials: str = "ambient"
    """Where the jobs and feature servers of a namespace get AWS credentials:
    ``namespace``, that namespace's own (the Secret aws_credentials_secret in it, or an
    IRSA role on the pod's ServiceAccount there; with neither, nothing runs there and
    the object is not Ready, reason CredentialsMissing); ``ambient``, what the pods'
    environment gives the AWS SDK (EKS Pod Identity, a node role; the local platform).
    The chart sets ``namespace``. Env: FEATUREKUBE_AWS_CREDENTIALS."""

    aws_credentials_secret: str = "featurekube-aws"
    """With aws_credentials ``namespace``: the Secret, in each namespace, whose
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) that namespace's
    jobs and feature servers take. Env: FEATUREKUBE_AWS_CREDENTIALS_SECRET."""

    allowed_prefixes: str = ""
    """The S3 prefixes each namespace's views may read sources from and keep offline
    data in: a JSON object from namespace (``"*"``: any other) to a list of prefixes,
    e.g. ``{"team-a": ["s3://lake/team-a/"]}``; the namespace's own directory of the
    offline store is always allowed. A view outside them is InvalidSpec, and its jobs
    check again before they read. Empty: not confined.
    Env: FEATUREKUBE_ALLOWED_PREFIXES."""

    metrics_port: int = 8080
    """Port of the Prometheus metrics endpoint; 0 disables it. Env: FEATUREKUBE_METRICS_PORT."""

    excluded_namespaces: str = "kube-system,kube-public,kube-node-lease"
    """Namespaces, separated by commas, whose FeatureViews and FeatureServices the
    operator refuses (Ready=False, NamespaceNotManaged) and where it creates nothing:
    Kubernetes' own, and (the chart adds it when watching all namespaces) the
    operator's. Env: FEATUREKUBE_EXCLUDED_NAMESPACES."""

    admission_port: int = 0
    """Port of the validating admission webhook (HTTPS) that refuses, at ``kubectl
    apply``, what ``featurekube validate`` refuses in one object; 0: none.
    Env: FEATUREKUBE_ADMISSION_PORT."""

    admission_cert_dir: str = "/etc/featurekube/admission"
    """Directory holding the webhook's serving certificate and key, ``tls.crt`` and
    ``tls.key`` (a mounted TLS Secret), whose CA the ValidatingWebhookConfiguration
    names. Env: FEATUREKUBE_ADMISSION_CERT_DIR."""

    parity_enabled: bool = True
    """Run the parity check of FeatureServices whose ``spec.monitoring.parity`` enables
    it (see docs/monitoring.md); false: none runs. Env: FEATUREKUBE_PARITY_ENABLED."""

    parity_tick_seconds: float = 60.0
    """How often each FeatureService is looked at to see whether its parity check is
    due (each service's own ``interval`` decides when it is), in seconds.
    Env: FEATUREKUBE_PARITY_TICK_SECONDS."""

    parity_max_concurrent: int = 2
    """Parity checks running at once, over every service; each runs in a thread of its
    own, off the operator's event loop. Env: FEATUREKUBE_PARITY_MAX_CONCURRENT."""

    parity_timeout_seconds: float = 120.0
    """Longest a parity check may take, in seconds; one that takes longer records
    nothing and is tried again at its next interval. Env: FEATUREKUBE_PARITY_TIMEOUT_SECONDS."""

    parity_settle_seconds: float = 60.0
    """Entities whose values were written, or whose event time is, less than this
    before a check are left out of it, in seconds: a Push commits offline after its
    online write, and clocks differ. Env: FEATUREKUBE_PARITY_SETTLE_SECONDS."""

    parity_ca_file: str = ""
    """The CA certificate (PEM) the parity check trusts feature servers' certificates
    by, when they serve TLS (``server_tls_secret`` set); empty: the system's CAs.
    Env: FEATUREKUBE_PARITY_CA_FILE."""

    parity_token_file: str = ""
    """The ServiceAccount token the parity check sends to feature servers; empty: the
    operator pod's own. Env: FEATUREKUBE_PARITY_TOKEN_FILE."""

    parity_reader: str = ""
    """Who the parity check calls feature servers as: the user name of that token
    (``system:serviceaccount:<namespace>:<name>``). The operator adds it to the readers
    of every service whose check is on, so no ``spec.access`` has to name it (it holds
    every namespace's data already). Empty: nothing is added, and a service must list
    it in ``spec.access.read`` to be checked. Env: FEATUREKUBE_PARITY_READER."""

    kafka_bootstrap_servers: str = ""
    """The Kafka cluster stream sources read by default: ``host:port`` pairs separated
    by commas (Kafka's ``bootstrap.servers``); empty: none configured.
    Env: FEATUREKUBE_KAFKA_BOOTSTRAP_SERVERS."""

    kafka_security_protocol: str = "PLAINTEXT"
    """How clients talk to those brokers: ``PLAINTEXT``, ``SSL`` (TLS), ``SASL_PLAINTEXT``
    or ``SASL_SSL`` (Kafka's ``security.protocol``). The chart derives it from
    ``kafka.tls.enabled`` and ``kafka.sasl.mechanism``.
    Env: FEATUREKUBE_KAFKA_SECURITY_PROTOCOL."""

    kafka_tls_ca_secret: str = ""
    """With TLS: the Secret whose key ``ca.crt`` is the CA bundle (PEM) the brokers'
    certificates are checked against; empty: the system's CAs.
    Env: FEATUREKUBE_KAFKA_TLS_CA_SECRET."""

    kafka_tls_ca_file: str = ""
    """Where the operator finds that CA bundle (the Secret mounted); empty: the
    system's CAs. Env: FEATUREKUBE_KAFKA_TLS_CA_FILE."""

    kafka_sasl_mechanism: str = ""
    """With SASL: ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``; empty without it.
    Env: FEATUREKUBE_KAFKA_SASL_MECHANISM."""

    kafka_sasl_secret: str = ""
    """With SASL: the Secret whose keys ``username`` and ``password`` are the
    credentials. Env: FEATUREKUBE_KAFKA_SASL_SECRET."""

    kafka_sasl_dir: str = ""
    """Where the operator finds those credentials: the Secret mounted, one file per
    key. Env: FEATUREKUBE_KAFKA_SASL_DIR."""

    def __post_init__(self) -> None:
        if self.aws_credentials not in credentials.MODES:
            raise ValueError(
                f"FEATUREKUBE_AWS_CREDENTIALS: {self.aws_credentials!r} is not one of "
                f"{', '.join(credentials.MODES)}"
            )
        s3_prefixes.parse_allowed(self.allowed_prefixes)  # refused at start-up, not later
        if self.server_auth not in ("tokenreview", "none"):
            raise ValueError(
                f"FEATUREKUBE_SERVER_AUTH: {self.server_auth!r} is not one of tokenreview, none"
            )
        _check_kafka(self)

    @property
    def kafka_tls(self) -> bool:
        """Whether clients reach Kafka over TLS."""
        return self.kafka_security_protocol in ("SSL", "SASL_SSL")

    @property
    def allowed(self) -> dict[str, tuple[str, ...]]:
        """:attr:`allowed_prefixes` parsed: namespace to prefixes ({}: not confined)."""
        return s3_prefixes.parse_allowed(self.allowed_prefixes)

    @property
    def metrics_namespace_list(self) -> list[str]:
        """:attr:`server_metrics_namespaces` as a list."""
        return [n.strip() for n in self.server_metrics_namespaces.split(",") if n.strip()]

    @property
    def excluded(self) -> frozenset[str]:
        """:attr:`excluded_namespaces` as a set."""
        return frozenset(n.strip() for n in self.excluded_namespaces.split(",") if n.strip())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorSettings:
        """Settings from ``environ`` (default ``os.environ``); unset variables keep defaults."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            key = env_name(f.name)
            if key not in env:
                continue
            raw = env[key]
            if f.name == "spark_conf":
                values[f.name] = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
            elif f.type in ("int",):
                values[f.name] = int(raw)
            elif f.type in ("float",):
                values[f.name] = float(raw)
            elif f.type in ("bool",):
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _check_kafka(settings: OperatorSettings) -> None:
    """Refuse, at start-up, Kafka settings that contradict each other."""
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if protocol not in KAFKA_SECURITY_PROTOCOLS:
        raise ValueError(
            f"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of "
            f"{', '.join(KAFKA_SECURITY_PROTOCOLS)}"
        )
    sasl = protocol.startswith("SASL_")
    if sasl and mechanism not in KAFKA_SASL_MECHANISMS:
        raise ValueError(
            f"FEATUREKUBE_KAFKA_SASL_MECHANISM: {mechanism!r} is not one of "
            f"{', '.join(KAFKA_SASL_MECHANISMS)}, which {protocol} needs"
        )
    if sasl and not (settings.kafka_sasl_secret and settings.kafka_sasl_dir):
        raise ValueError(
            f"FEATUREKUBE_KAFKA_SASL_SECRET and FEATUREKUBE_KAFKA_SASL_DIR: {protocol} needs "
            "the Secret holding the username and password, and where it is mounted"
        )
    if not sasl and mechanism:
        raise ValueError(
            f"FEATUREKUBE_KAFKA_SASL_MECHANISM: {mechanism!r} is set but "
            f"FEATUREKUBE_KAFKA_SECURITY_PROTOCOL is {protocol}: use SASL_SSL or SASL_PLAINTEXT"
        )
    if settings.kafka_tls_ca_file and not settings.kafka_tls:
        raise ValueError(
            f"FEATUREKUBE_KAFKA_TLS_CA_FILE is set but FEATUREKUBE_KAFKA_SECURITY_PROTOCOL is "
            f"{protocol}, which uses no TLS: use SSL or SASL_SSL"
        )
