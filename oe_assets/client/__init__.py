"""The OE client (pure; httpx): tenants, execution templates, keyset-paged process contexts."""

from oe_assets.client.errors import (
    OeAuthError,
    OeBadResponseError,
    OeError,
    OeNotFoundError,
    OeRequestError,
    OeResponseTooLargeError,
    OeRetryBudgetExceeded,
    OeUnreachableError,
)
from oe_assets.client.oe_client import EndpointPaths, OeClient, OeClientConfig
from oe_assets.client.pages import Page, RejectedRecord
from oe_assets.client.paginator import QueryNames
from oe_assets.client.retry import ClientStats, RetryPolicy

__all__ = [
    "ClientStats",
    "EndpointPaths",
    "OeAuthError",
    "OeBadResponseError",
    "OeClient",
    "OeClientConfig",
    "OeError",
    "OeNotFoundError",
    "OeRequestError",
    "OeResponseTooLargeError",
    "OeRetryBudgetExceeded",
    "OeUnreachableError",
    "Page",
    "QueryNames",
    "RejectedRecord",
    "RetryPolicy",
]
