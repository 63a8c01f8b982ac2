"""Delivery into a Celonis data pool (Data Push API) and its data model; knows nothing of Dagster."""

from oe_assets.celonis.api import CelonisApi, CelonisConfig, CelonisPaths, OAuthClient, StaticKey
from oe_assets.celonis.delivery import DeliveryReport, PushTable, deliver, destination_id
from oe_assets.celonis.errors import (
    CelonisError,
    CelonisHourlyLimit,
    CelonisJobFailed,
    CelonisLoadFailed,
    CelonisRequestError,
)
from oe_assets.celonis.service import PushOutcome, push_and_reload

__all__ = [
    "CelonisApi",
    "CelonisConfig",
    "CelonisError",
    "CelonisHourlyLimit",
    "CelonisJobFailed",
    "CelonisLoadFailed",
    "CelonisPaths",
    "CelonisRequestError",
    "DeliveryReport",
    "OAuthClient",
    "PushOutcome",
    "PushTable",
    "StaticKey",
    "deliver",
    "destination_id",
    "push_and_reload",
]
