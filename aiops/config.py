"""Configuration: environment variables, read once, validated at start.

Every setting is an environment variable. When a server URL is unset, commands use the
embedded dev stack that `aiops dev up` started under AIOPS_HOME.
"""

from __future__ import annotations

import difflib
import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from aiops.errors import AiopsError

LogLevel = Literal["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"]
_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")

# The dimension each known local model produces; a mismatch is a configuration error
# caught at start rather than a failed INSERT later.
KNOWN_MODEL_DIMS: dict[str, int] = {
    "all-MiniLM-L6-v2": 384,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class ConfigError(AiopsError):
    """A setting is missing, unknown or malformed. The message names the variable."""

    exit_code = 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="",
        case_sensitive=True,
        extra="ignore",
        populate_by_name=True,
    )

    temporal_address: str | None = Field(
        default=None,
        validation_alias="TEMPORAL_ADDRESS",
        description="host:port of a Temporal frontend; unset: the dev stack's",
    )
    temporal_namespace: str = Field(
        default="default",
        validation_alias="TEMPORAL_NAMESPACE",
        description="Temporal namespace for every workflow",
        min_length=1,
    )
    temporal_task_queue: str = Field(
        default="aiops",
        validation_alias="AIOPS_TASK_QUEUE",
        description="task queue the worker polls",
        min_length=1,
    )
    database_url: str | None = Field(
        default=None,
        validation_alias="DATABASE_URL",
        description="postgresql:// URL (pgvector required); unset: the dev stack's",
    )
    app_database_url: str | None = Field(
        default=None,
        validation_alias="AIOPS_APP_DATABASE_URL",
        description=(
            "the services' own role, not the schema's owner: `aiops migrate` creates it "
            "when missing, sets its password to the URL's and grants it (aiops_grant_app_role)"
        ),
    )
    redis_url: str | None = Field(
        default=None,
        validation_alias="REDIS_URL",
        description="redis:// URL; unset: the dev stack's",
    )
    home: Path = Field(
        default=Path(".aiops"),
        validation_alias="AIOPS_HOME",
        description="data directory for the dev stack's servers, logs and PIDs",
    )
    embedding_provider: Literal["local", "openai"] = Field(
        default="local",
        validation_alias="AIOPS_EMBEDDING_PROVIDER",
        description="local: all-MiniLM-L6-v2 on numpy, offline; openai: any OpenAI-compatible API",
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        validation_alias="AIOPS_EMBEDDING_MODEL",
        description="embedding model name",
        min_length=1,
    )
    embedding_dim: int | None = Field(
        default=None,
        validation_alias="AIOPS_EMBEDDING_DIM",
        description="vector dimension; default: the model's own (384 for all-MiniLM-L6-v2)",
        gt=0,
        le=16000,
    )
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="OPENAI_API_KEY",
        description="API key for the openai embedding provider and the optional LLM",
    )
    openai_base_url: str = Field(
        default="https://api.openai.com/v1",
        validation_alias="OPENAI_BASE_URL",
        description="base URL of an OpenAI-compatible API (Ollama, TEI, vLLM)",
    )
    llm_model: str | None = Field(
        default=None,
        validation_alias="AIOPS_LLM_MODEL",
        description="chat model for an optional root-cause note in each diagnosis (e.g. "
        "gpt-4o-mini, or an Ollama model through OPENAI_BASE_URL); unset: no LLM is called",
    )
    llm_timeout_s: float = Field(
        default=20.0,
        validation_alias="AIOPS_LLM_TIMEOUT_S",
        gt=0,
        description="how long a root-cause note may take before the diagnosis goes on without",
    )
    tool_mine_min_runs: int = Field(
        default=3,
        validation_alias="AIOPS_TOOL_MINE_MIN_RUNS",
        ge=1,
        description="`aiops tools build` drafts a tool from a sequence of actions once it "
        "healed one problem this many times",
    )
    tool_mine_require_approval: bool = Field(
        default=True,
        validation_alias="AIOPS_TOOL_MINE_REQUIRE_APPROVAL",
        description="count only runs a person approved when mining sequences for tools",
    )
    api_token: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_API_TOKEN",
        description="bearer token `aiops api` requires on POST endpoints; unset: no token asked",
    )
    kg_search_per_minute: int = Field(
        default=60,
        validation_alias="AIOPS_KG_SEARCH_PER_MINUTE",
        ge=0,
        description="`GET /kg/search` requests one identity (token subject) may make in any "
        "60 s, counted in Redis across API replicas; more get 429 with Retry-After. 0: no limit",
    )
    # --- identities, roles, approvals (aiops/auth) ---
    jwt_secret: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_JWT_SECRET",
        description="HS256 secret that signs and verifies aiops tokens (`aiops token create`); "
        "unset: generated under AIOPS_HOME (unless AIOPS_OIDC_ISSUER is set)",
    )
    oidc_issuer: str | None = Field(
        default=None,
        validation_alias="AIOPS_OIDC_ISSUER",
        description="OIDC issuer URL whose JWKS verifies bearer tokens (keys cached, rotated)",
    )
    oidc_audience: str | None = Field(
        default=None,
        validation_alias="AIOPS_OIDC_AUDIENCE",
        description="audience (aud) an OIDC token must carry; required with AIOPS_OIDC_ISSUER",
    )
    oidc_jwks_url: str | None = Field(
        default=None,
        validation_alias="AIOPS_OIDC_JWKS_URL",
        description="JWKS URL; unset: read from the issuer's /.well-known/openid-configuration",
    )
    roles_claim: str = Field(
        default="roles",
        validation_alias="AIOPS_ROLES_CLAIM",
        min_length=1,
        description="claim holding a token's roles; a dotted path reaches into objects "
        "(realm_access.roles for Keycloak)",
    )
    token: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_TOKEN",
        description="the caller's bearer token: the CLI's identity for approvals and the API",
    )
    api_url: str | None = Field(
        default=None,
        validation_alias="AIOPS_API_URL",
        description="base URL of `aiops api`; set, `aiops approve` asks the API to sign the "
        "approval instead of signing it locally",
    )
    approvals: Literal["open", "signed"] | None = Field(
        default=None,
        validation_alias="AIOPS_APPROVALS",
        description="signed: an approval must carry a signed grant from a verified approver; "
        "open: any `approve` signal counts (dev only). Unset: open on the dev stack, signed "
        "when TEMPORAL_ADDRESS is set",
    )
    event_trust: Literal["open", "producers"] | None = Field(
        default=None,
        validation_alias="AIOPS_EVENT_TRUST",
        description="producers: an event may name only the services its producer may speak "
        "for (`aiops producers add`); open: any stream may name any service (dev only). "
        "Unset: open on the dev stack, producers when REDIS_URL is set",
    )
    simulated_adapter: bool = Field(
        default=False,
        validation_alias="AIOPS_SIMULATED_ADAPTER",
        description="1: the worker has the simulated adapter (tests, benchmarks); it acts "
        "for services registered with adapter: simulated",
    )
    temporal_tls: bool = Field(
        default=False,
        validation_alias="AIOPS_TEMPORAL_TLS",
        description="connect to Temporal over TLS with the system's CA roots (implied by "
        "AIOPS_TEMPORAL_TLS_CA/CERT)",
    )
    temporal_tls_ca: Path | None = Field(
        default=None,
        validation_alias="AIOPS_TEMPORAL_TLS_CA",
        description="PEM file of the CA that signed the Temporal frontend's certificate",
    )
    temporal_tls_cert: Path | None = Field(
        default=None,
        validation_alias="AIOPS_TEMPORAL_TLS_CERT",
        description="PEM client certificate for mTLS (with AIOPS_TEMPORAL_TLS_KEY)",
    )
    temporal_tls_key: Path | None = Field(
        default=None,
        validation_alias="AIOPS_TEMPORAL_TLS_KEY",
        description="PEM private key of the mTLS client certificate",
    )
    temporal_tls_server_name: str | None = Field(
        default=None,
        validation_alias="AIOPS_TEMPORAL_TLS_SERVER_NAME",
        description="name to check the frontend's certificate against (default: its host)",
    )
    temporal_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_TEMPORAL_API_KEY",
        description="API key sent to Temporal (Temporal Cloud, or a cluster's authorizer)",
    )
    payload_key: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_PAYLOAD_KEY",
        description="AES-256-GCM keys that encrypt every Temporal payload, "
        "`id1:base64key[,id0:base64key...]` (32-byte keys): the first encrypts, all decrypt "
        "(rotation); unset: payloads are stored in clear (docs/payload-encryption.md)",
    )
    # --- intake (alerts from Alertmanager, Grafana, CloudEvents, PagerDuty senders) ---
    intake_service_labels: str = Field(
        default="service,job,instance",
        validation_alias="AIOPS_INTAKE_SERVICE_LABELS",
        min_length=1,
        description="alert labels that name the service, first present wins",
    )
    intake_message_annotations: str = Field(
        default="summary,description",
        validation_alias="AIOPS_INTAKE_MESSAGE_ANNOTATIONS",
        min_length=1,
        description="alert annotations whose text is the problem's message, first present wins",
    )
    # --- notifications (apprise) ---
    notify_urls: str = Field(
        default="",
        validation_alias="AIOPS_NOTIFY_URLS",
        description="comma-separated apprise URLs told about approvals, escalations and "
        "failed fixes (mailto://, slack://, json://, ...); a registry service's `notify` "
        "list is added for its incidents",
    )
    notify_healed: bool = Field(
        default=False,
        validation_alias="AIOPS_NOTIFY_HEALED",
        description="1: also notify when an incident healed",
    )
    public_url: str | None = Field(
        default=None,
        validation_alias="AIOPS_PUBLIC_URL",
        description="base URL where people reach `aiops api` (approve and reject links)",
    )
    web_ui_url: str | None = Field(
        default=None,
        validation_alias="AIOPS_WEB_UI_URL",
        description="base URL of the Temporal Web UI for links in notifications",
    )
    log_level: LogLevel = Field(
        default="INFO",
        validation_alias="AIOPS_LOG_LEVEL",
        description="root log level",
    )
    log_levels: Annotated[dict[str, LogLevel], NoDecode] = Field(
        default_factory=dict,
        validation_alias="AIOPS_LOG_LEVELS",
        description="per-module levels, e.g. aiops.knowledge=DEBUG,temporalio=WARNING",
    )
    dev_temporal_port: int = Field(
        default=7233,
        validation_alias="AIOPS_DEV_TEMPORAL_PORT",
        ge=1,
        le=65535,
        description="dev stack: Temporal frontend port",
    )
    dev_temporal_ui_port: int = Field(
        default=8233,
        validation_alias="AIOPS_DEV_TEMPORAL_UI_PORT",
        ge=1,
        le=65535,
        description="dev stack: Temporal Web UI port",
    )
    dev_postgres_port: int = Field(
        default=5434,
        validation_alias="AIOPS_DEV_POSTGRES_PORT",
        ge=1,
        le=65535,
        description="dev stack: PostgreSQL port",
    )
    dev_redis_port: int = Field(
        default=6382,
        validation_alias="AIOPS_DEV_REDIS_PORT",
        ge=1,
        le=65535,
        description="dev stack: Redis port",
    )

    # --- event mesh (Redis Streams in, event store out) ---
    events_maxlen: int = Field(
        default=1_000_000,
        validation_alias="AIOPS_EVENTS_MAXLEN",
        ge=1000,
        description="approximate length each events:<domain> stream is trimmed to by the "
        "listener; entries a consumer group has not read yet are never trimmed",
    )
    events_max_payload_bytes: int = Field(
        default=1_048_576,
        validation_alias="AIOPS_EVENTS_MAX_PAYLOAD_BYTES",
        ge=1024,
        description="largest accepted event (bytes of its JSON); larger ones are dead-lettered",
    )
    events_retention_days: float = Field(
        default=30.0,
        validation_alias="AIOPS_EVENTS_RETENTION_DAYS",
        ge=0,
        description="stored events (the only copy of raw, unmasked payloads) older than this "
        "are pruned hourly by the listener and by `aiops events prune`; 0 keeps them forever",
    )
    listener_streams: str = Field(
        default="events:*",
        validation_alias="AIOPS_LISTENER_STREAMS",
        min_length=1,
        description="comma-separated streams or glob patterns the listener consumes",
    )
    listener_group: str = Field(
        default="aiops",
        validation_alias="AIOPS_LISTENER_GROUP",
        min_length=1,
        description="Redis consumer group shared by every listener process",
    )
    listener_batch_size: int = Field(
        default=500,
        validation_alias="AIOPS_LISTENER_BATCH_SIZE",
        ge=1,
        le=100_000,
        description="entries read per XREADGROUP call and stored per COPY",
    )
    listener_block_ms: int = Field(
        default=1000,
        validation_alias="AIOPS_LISTENER_BLOCK_MS",
        ge=0,
        description="how long XREADGROUP waits for new entries",
    )
    listener_claim_idle_ms: int = Field(
        default=30_000,
        validation_alias="AIOPS_LISTENER_CLAIM_IDLE_MS",
        ge=100,
        description="entries pending this long are taken over (XAUTOCLAIM) from a dead listener",
    )
    fingerprint_shared: bool = Field(
        default=True,
        validation_alias="AIOPS_FINGERPRINT_SHARED",
        description="listeners keep the problem templates in PostgreSQL, so every listener, "
        "and one restarted, gives a line the same fingerprint; off: each mines its own in memory",
    )
    fingerprint_refresh_s: float = Field(
        default=5.0,
        validation_alias="AIOPS_FINGERPRINT_REFRESH_S",
        ge=0,
        description="how often a listener takes the other listeners' template changes (merges) "
        "between the new line shapes it sees",
    )
    incident_correlate_s: float = Field(
        default=120.0,
        validation_alias="AIOPS_INCIDENT_CORRELATE_S",
        ge=0,
        description="a failed health probe of a service that reported its own problem this "
        "recently is counted on that incident instead of opening another; 0 turns it off",
    )
    incident_coalesce_s: float = Field(
        default=0.25,
        validation_alias="AIOPS_INCIDENT_COALESCE_S",
        ge=0,
        le=3600,
        description="after a signal to an incident, its next observations wait this long "
        "and go as one signal (their events stay unacknowledged until it is sent); the "
        "first observation of a quiet incident is sent at once; 0 sends one per batch",
    )
    events_stale_after_s: float = Field(
        default=300.0,
        validation_alias="AIOPS_EVENTS_STALE_AFTER_S",
        ge=0,
        description="events that waited in their stream longer than this when the listener "
        "reads them (a backlog after an outage) are stored and counted, never acted on; "
        "0 acts on every event however old",
    )
    incident_max_retries: int = Field(
        default=2,
        validation_alias="AIOPS_INCIDENT_MAX_RETRIES",
        ge=0,
        le=20,
        description="after a failed fix or an unknown problem, how many times an incident "
        "whose events go on past its cool-down re-notifies and re-diagnoses (leaving out the "
        "fix that failed); 0 turns it off",
    )
    incident_history_budget: int = Field(
        default=10_000,
        validation_alias="AIOPS_INCIDENT_HISTORY_BUDGET",
        ge=100,
        le=40_000,
        description="history events after which an incident continues as a new run, "
        "carrying its counters (Temporal's hard limit is 51,200)",
    )
    dead_letter_stream: str = Field(
        default="events:dead",
        validation_alias="AIOPS_DEAD_LETTER_STREAM",
        min_length=1,
        description="where invalid entries go, with their original fields and the reason",
    )
    # --- knowledge graph ---
    similarity_threshold: float = Field(
        default=0.92,
        validation_alias="AIOPS_SIMILARITY_THRESHOLD",
        gt=0,
        le=1,
        description="cosine similarity above which a new problem is linked similar_to an old one",
    )
    embedding_batch_size: int | None = Field(
        default=None,
        validation_alias="AIOPS_EMBEDDING_BATCH_SIZE",
        ge=1,
        le=4096,
        description="texts per embedding call; default: the provider's (32 local, 256 per API)",
    )
    embedding_cache_size: int = Field(
        default=10_000,
        validation_alias="AIOPS_EMBEDDING_CACHE_SIZE",
        ge=0,
        description="embeddings kept in memory (LRU); 0 disables the cache",
    )
    embedding_threads: int = Field(
        default=1,
        validation_alias="AIOPS_EMBEDDING_THREADS",
        ge=1,
        le=64,
        description="BLAS threads of the local embedding model, process-wide; more threads "
        "spin between an incident's many small calls (about 200 ms of CPU per incident at 2)",
    )
    # --- pattern library ---
    pattern_reload_s: float = Field(
        default=5.0,
        validation_alias="AIOPS_PATTERN_RELOAD_S",
        gt=0,
        description="how often the listener checks the pattern library for changes and reloads",
    )
    pattern_evolve_min_outcomes: int = Field(
        default=10,
        validation_alias="AIOPS_PATTERN_EVOLVE_MIN_OUTCOMES",
        ge=1,
        description="outcomes a pattern needs before a success rate under 0.7 evolves it",
    )
    # --- agents (built-in and custom, from the aiops.agents entry points) ---
    agent_timeout_s: float = Field(
        default=5.0,
        validation_alias="AIOPS_AGENT_TIMEOUT_S",
        gt=0,
        description="how long one agent may take to propose or learn before it is left out",
    )
    agent_heartbeat_s: float = Field(
        default=30.0,
        validation_alias="AIOPS_AGENT_HEARTBEAT_S",
        gt=0,
        description="how often the worker reports its agents' health to the agents registry",
    )
    # --- healing ---
    policy_file: Path | None = Field(
        default=None,
        validation_alias="AIOPS_POLICY_FILE",
        description="YAML policy replacing the shipped default (allowed, forbidden, critical)",
    )
    approval_timeout_s: float = Field(
        default=900.0,
        validation_alias="AIOPS_APPROVAL_TIMEOUT_S",
        gt=0,
        description="how long a critical action waits for approval before escalating (never acts)",
    )
    secret_key: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_SECRET_KEY",
        description="Fernet key encrypting service credentials; unset: generated under AIOPS_HOME",
    )
    # --- audit log (aiops/audit): keyed chain, anchors outside the table ---
    audit_key: SecretStr | None = Field(
        default=None,
        validation_alias="AIOPS_AUDIT_KEY",
        description="secret the audit chain's HMAC and its anchors' signatures are derived "
        "from (HKDF); unset: derived from AIOPS_SECRET_KEY. The database never sees it",
    )
    audit_anchor_dir: Path | None = Field(
        default=None,
        validation_alias="AIOPS_AUDIT_ANCHOR_DIR",
        description="directory of audit-anchors.jsonl, the signed checkpoints of the audit "
        "chain's head (keep it off the database host); unset: AIOPS_HOME/audit",
    )
    audit_anchor_interval_s: float = Field(
        default=300.0,
        validation_alias="AIOPS_AUDIT_ANCHOR_INTERVAL_S",
        ge=1,
        description="how often the worker's AuditAnchorWorkflow checkpoints the audit head; "
        "rows written since the last checkpoint are the window a truncation can hide in",
    )
    worker_max_activities: int = Field(
        default=50,
        validation_alias="AIOPS_WORKER_MAX_ACTIVITIES",
        ge=1,
        description="activities one worker runs at once",
    )
    db_pool_min: int = Field(
        default=1,
        validation_alias="AIOPS_DB_POOL_MIN",
        ge=0,
        description="PostgreSQL connections the worker keeps open when idle",
    )
    db_pool_max: int = Field(
        default=20,
        validation_alias="AIOPS_DB_POOL_MAX",
        ge=1,
        description="PostgreSQL connections the worker's activities share; it opens up to "
        "AIOPS_WORKER_MAX_ACTIVITIES more, one per action running, to hold the action's locks",
    )
    worker_max_workflow_tasks: int = Field(
        default=50,
        validation_alias="AIOPS_WORKER_MAX_WORKFLOW_TASKS",
        ge=1,
        description="workflow tasks one worker runs at once",
    )

    # --- monitor agent (health probes, anomaly detector, run-time limits) ---
    monitor_probe_interval_s: float = Field(
        default=30.0,
        validation_alias="AIOPS_MONITOR_PROBE_INTERVAL_S",
        ge=1,
        description="seconds between health probes of a service (metadata probe_interval_s wins)",
    )
    monitor_probe_timeout_s: float = Field(
        default=5.0,
        validation_alias="AIOPS_MONITOR_PROBE_TIMEOUT_S",
        gt=0,
        description="a health endpoint slower than this is unhealthy",
    )
    monitor_realert_s: float = Field(
        default=300.0,
        validation_alias="AIOPS_MONITOR_REALERT_S",
        ge=0,
        description="while a service stays unhealthy, ServiceUnhealthy again at most this often",
    )
    monitor_unhealthy_after_s: float = Field(
        default=0.0,
        validation_alias="AIOPS_MONITOR_UNHEALTHY_AFTER_S",
        ge=0,
        description="a service's health check must fail this long before ServiceUnhealthy "
        "is published (a failure threshold); 0 reports the first failure",
    )
    monitor_stream: str = Field(
        default="events:monitor",
        validation_alias="AIOPS_MONITOR_STREAM",
        min_length=1,
        description="stream the monitor publishes health, metric and anomaly events to",
    )
    monitor_sync_interval_s: float = Field(
        default=30.0,
        validation_alias="AIOPS_MONITOR_SYNC_INTERVAL_S",
        ge=1,
        description="how often `aiops monitor` matches probe schedules to the registry",
    )
    anomaly_streams: str = Field(
        default="events:*",
        validation_alias="AIOPS_ANOMALY_STREAMS",
        min_length=1,
        description="comma-separated streams or glob patterns the anomaly detector reads",
    )
    anomaly_group: str = Field(
        default="aiops-anomaly",
        validation_alias="AIOPS_ANOMALY_GROUP",
        min_length=1,
        description="the anomaly detector's own consumer group (independent of the listener)",
    )
    anomaly_warmup: int = Field(
        default=30,
        validation_alias="AIOPS_ANOMALY_WARMUP",
        ge=2,
        description="samples of a (service, metric) before it can raise an anomaly",
    )
    anomaly_z: float = Field(
        default=4.0,
        validation_alias="AIOPS_ANOMALY_Z",
        gt=0,
        description="robust z-score at which a metric is anomalous",
    )
    anomaly_cache_size: int = Field(
        default=10_000,
        validation_alias="AIOPS_ANOMALY_CACHE_SIZE",
        ge=1,
        description="(service, metric) baselines kept in memory; `aiops limits` changes it live",
    )
    max_agents: int = Field(
        default=16,
        validation_alias="AIOPS_MAX_AGENTS",
        ge=1,
        description="health probes one worker runs at once; `aiops limits` changes it live",
    )

    # --- observability ---
    tracing: Literal["console", "otlp", "off"] = Field(
        default="console",
        validation_alias="AIOPS_TRACING",
        description="where spans go; OTEL_EXPORTER_OTLP_ENDPOINT set means otlp",
    )
    metrics_bind: str = Field(
        default="off",
        validation_alias="AIOPS_METRICS_BIND",
        description="host:port serving Temporal SDK metrics for Prometheus (/metrics), or off",
    )

    @field_validator("log_levels", mode="before")
    @classmethod
    def _parse_log_levels(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        levels: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            module, sep, level = item.partition("=")
            if not sep or not module.strip():
                raise ValueError(f"expected module=LEVEL pairs separated by commas, got {item!r}")
            levels[module.strip()] = level.strip().upper()
        return levels

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql:// or postgres://")
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("temporal_address")
    @classmethod
    def _check_temporal_address(cls, value: str | None) -> str | None:
        if value is not None:
            host, sep, port = value.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError("must be host:port, e.g. temporal.example.com:7233")
        return value

    @property
    def resolved_embedding_dim(self) -> int:
        """The vector dimension the schema and the embedder agree on."""
        if self.embedding_dim is not None:
            return self.embedding_dim
        if self.embedding_model in KNOWN_MODEL_DIMS:
            return KNOWN_MODEL_DIMS[self.embedding_model]
        raise ConfigError(
            f"AIOPS_EMBEDDING_DIM is required for the unknown model "
            f"AIOPS_EMBEDDING_MODEL={self.embedding_model!r}: set it to the model's vector size"
        )

    @property
    def on_dev_stack(self) -> bool:
        """No server URL is set: the embedded dev stack, where the dev defaults apply."""
        return not (self.temporal_address or self.database_url or self.redis_url)

    @property
    def approvals_mode(self) -> Literal["open", "signed"]:
        if self.approvals is not None:
            return self.approvals
        return "open" if self.temporal_address is None else "signed"

    @property
    def event_trust_mode(self) -> Literal["open", "producers"]:
        if self.event_trust is not None:
            return self.event_trust
        return "open" if self.redis_url is None else "producers"

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def audit_anchor_path(self) -> Path:
        base = self.audit_anchor_dir.expanduser() if self.audit_anchor_dir else None
        return (base or self.home_dir / "audit").resolve() / "audit-anchors.jsonl"


def _env_names() -> dict[str, str]:
    """Environment variable name -> field name, for every setting."""
    names: dict[str, str] = {}
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            names[alias] = field_name
        elif isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice] = field_name
    return names


ENV_NAMES = _env_names()


def _check_unknown(environ: dict[str, str]) -> None:
    # A typo such as AIOPS_EMBEDING_DIM would otherwise be silently ignored.
    known = set(ENV_NAMES)
    for name in sorted(environ):
        if name.startswith("AIOPS_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"unknown setting {name}{hint}; see `aiops config --help` for the list"
            )


def _describe(error: ValidationError) -> str:
    field_to_env = {field: env for env, field in ENV_NAMES.items()}
    first = error.errors()[0]
    loc = [str(part) for part in first["loc"]]
    head = loc[0] if loc else ""
    env = head if head in ENV_NAMES else field_to_env.get(head, head)
    value = first.get("input")
    shown = "***" if any(w in env for w in ("KEY", "SECRET", "TOKEN")) else repr(value)
    return f"invalid {env}={shown}: {first['msg']}"


def load_settings() -> Settings:
    """Read and validate the settings; raise ConfigError naming the bad variable."""
    _check_unknown(dict(os.environ))
    try:
        settings = Settings()
        settings.resolved_embedding_dim  # noqa: B018 - validate the model/dim pair at start
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    except SettingsError as error:
        raise ConfigError(str(error)) from None
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
