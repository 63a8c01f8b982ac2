"""Contexts no partition can land: created before the first partition, or after today.

Partitions run from ``OE_START_DATE`` to today, so such contexts are neither read nor landed.
They are counted (the API's ``X-Total-Count``, one cheap request each) so that a run reports
them instead of skipping them silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from oe_assets.client import OeBadResponseError, OeClient
from oe_assets.core.timestamps import day_window


@dataclass(frozen=True)
class OutsidePartitions:
    """How many contexts lie outside ``first_day .. last_day``; None when the API gives no count."""

    first_day: date
    last_day: date
    before_first_day: int | None
    after_last_day: int | None

    @property
    def known(self) -> bool:
        return self.before_first_day is not None and self.after_last_day is not None

    @property
    def total(self) -> int:
        return (self.before_first_day or 0) + (self.after_last_day or 0)


def count_outside_partitions(
    client: OeClient, template_ids: Sequence[str], first_day: date, last_day: date
) -> OutsidePartitions:
    """Counts, over the digital processes, the contexts created before ``first_day`` and after
    ``last_day`` (UTC days). An API that answers without a count gives None, never an error."""
    start, _ = day_window(first_day)
    _, end = day_window(last_day)
    before = after = 0
    try:
        for template_id in template_ids:
            before += client.count_process_contexts(template_id, created_before=start)
            after += client.count_process_contexts(template_id, created_since=end)
    except OeBadResponseError:
        return OutsidePartitions(first_day, last_day, None, None)
    return OutsidePartitions(first_day, last_day, before, after)
