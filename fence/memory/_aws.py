"""boto3 plumbing shared by the AWS-backed memories: clients, retries, errors.

Clients follow boto3's standard configuration: region from ``region=`` or
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` / the profile, endpoint from
``endpoint_url=`` or ``AWS_ENDPOINT_URL_<SERVICE>`` / ``AWS_ENDPOINT_URL``, so
one code path serves AWS and a local endpoint. Throttling and transient
errors are retried by botocore's ``standard`` retry mode with exponential
backoff and jitter; what is left after the retries becomes a
``MemoryBackendError`` that names the table or memory and says what to do.
Error messages never include credentials or request bodies.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

import boto3
from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from fence.errors import MemoryBackendError, MissingCredentialError
from fence.validation import clip

MAX_ATTEMPTS = 10
RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    connect_timeout=5,
    read_timeout=30,
)
"""Up to 10 attempts with exponential backoff for throttling and 5xx errors."""

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ThrottledException",
    }
)
DENIED_CODES = frozenset(
    {
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
    }
)

_session_lock = threading.Lock()
_sessions: dict[int, boto3.session.Session] = {}


def _default_session() -> boto3.session.Session:
    """One boto3 session per process: creating one costs ~0.2 s, a client ~7 ms."""
    pid = os.getpid()
    session = _sessions.get(pid)
    if session is None:
        session = _sessions[pid] = boto3.session.Session()
    return session


def make_client(
    service: str,
    *,
    what: str,
    client: BaseClient | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    boto3_session: boto3.session.Session | None = None,
) -> BaseClient:
    """``client`` if given, else a new client with fence's retry policy.

    ``what`` names the resource in errors.
    """
    if client is not None:
        return client
    with _session_lock:  # boto3 sessions are not thread-safe while creating clients
        session = boto3_session or _default_session()
        try:
            return session.client(
                service, region_name=region, endpoint_url=endpoint_url, config=RETRY_CONFIG
            )
        except NoRegionError:
            raise MemoryBackendError(
                f"no AWS region configured for {what}: pass region=... or set AWS_REGION "
                "(or AWS_DEFAULT_REGION)"
            ) from None


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(
    exc: Exception, *, what: str, action: str, not_found: str, region: str | None
) -> Exception:
    """The fence error to raise for an AWS failure (``exc`` is chained by the caller)."""
    where = f"{what} (region {region})" if region else what
    if isinstance(exc, NoCredentialsError):
        return MissingCredentialError(
            f"no AWS credentials found for {where}: configure them the usual boto3 way "
            "(environment, profile, or instance role)"
        )
    if isinstance(exc, ConnectionError):
        return MemoryBackendError(
            f"cannot reach the AWS endpoint for {where} during {action}: {type(exc).__name__}; "
            "check the endpoint URL / network and retry"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code == "ResourceNotFoundException":
            return MemoryBackendError(f"{where} was not found during {action}: {not_found}")
        if code in DENIED_CODES:
            return MemoryBackendError(
                f"access to {where} was denied during {action} ({code}): check the "
                "credentials and the worker's IAM policy (ops/iam-worker-policy.json)"
            )
        if code in THROTTLING_CODES:
            return MemoryBackendError(
                f"{where} is throttling requests ({code}) and {action} still failed after "
                f"{MAX_ATTEMPTS} attempts with backoff: raise its "
                "capacity or quota, or slow down"
            )
        message = clip(str(exc.response.get("Error", {}).get("Message", "")), 300)
        return MemoryBackendError(f"{action} on {where} failed ({code}): {message}")
    if isinstance(exc, BotoCoreError):
        return MemoryBackendError(f"{action} on {where} failed: {type(exc).__name__}: {exc}")
    return exc


def call(
    client: BaseClient,
    operation: str,
    *,
    what: str,
    not_found: str,
    passthrough: frozenset[str] = frozenset(),
    **params: Any,
) -> dict[str, Any]:
    """Call ``client.<operation>(**params)``; AWS errors become fence errors.

    ``ClientError``s whose code is in ``passthrough`` are re-raised unchanged
    for the caller to handle (e.g. a cancelled transaction).
    """
    try:
        return getattr(client, operation)(**params)
    except (ClientError, BotoCoreError) as exc:
        if isinstance(exc, ClientError) and error_code(exc) in passthrough:
            raise
        raise translate(
            exc,
            what=what,
            action=operation,
            not_found=not_found,
            region=client.meta.region_name,
        ) from exc


def backoff(attempt: int, base: float = 0.005, cap: float = 0.5) -> None:
    """Sleep with full jitter before retry ``attempt`` (0-based) of a contended write."""
    time.sleep(random.uniform(0, min(cap, base * (2**attempt))))
