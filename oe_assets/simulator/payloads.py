"""Event payloads of each kind of digital process: what a run receives, in order, with times.

A script returns the run's events ``(time ms, event-type key, payload)`` and an external id.
Keys mix dots, dashes and case like real OE event types; payloads carry nested objects, arrays
of objects, arrays of arrays, arrays of scalars, empty objects/arrays and cloud-function outputs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from oe_assets.simulator.randutil import pick, rint, rrange, ulid
from oe_assets.simulator.timeutil import MS_PER_DAY, iso_ms, iso_s

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = MS_PER_DAY

Event = tuple[int, str, Any]  # (time in ms since epoch, event-type key, payload)

PEOPLE = (
    ("Anna Schmidt", "anna.schmidt"),
    ("Piotr Nowak", "piotr.nowak"),
    ("Maria Rossi", "maria.rossi"),
    ("Jan de Vries", "jan.devries"),
    ("Chloé Martin", "chloe.martin"),
)


def _cloud(t: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"occurredAt": iso_s(t), "type": "cloud-function"}, "result": result}


def _second_after(t: int, rng: random.Random, lo: int, hi: int) -> int:
    """A whole-second time ``lo..hi`` ms after ``t`` (cloud functions report whole seconds)."""
    return ((t + rint(rng, lo, hi)) // SECOND + 1) * SECOND


def wait(rng: random.Random, median_s: float, sigma: float, cap_ms: int) -> int:
    """A long-tailed waiting time (people, suppliers), capped."""
    return min(cap_ms, int(rng.lognormvariate(math.log(median_s), sigma) * SECOND) + 1)


_SUPPLIERS = ("ACME", "Globex", "Initech", "Umbrella", "Stark Parts", "Wayne Supply")
_WAREHOUSES = ("DE-01", "DE-02", "PL-02", "CZ-01", "NL-03", "FR-01")
_CURRENCIES = ("EUR", "EUR", "EUR", "USD", "PLN")


def _quotes(rng: random.Random, sku: str, base_price: float) -> list[dict[str, Any]]:
    quotes = []
    for q in range(pick(rng, (0, 1, 2, 2, 3))):
        price = round(base_price * rng.uniform(0.85, 1.15), 2)
        quotes.append(
            {
                "quoteId": f"Q-{rrange(rng, 1000, 99999)}",
                "supplier": pick(rng, _SUPPLIERS),
                "price": price,
                "currency": pick(rng, _CURRENCIES),
                "priceBreaks": [[10, round(price * 0.95, 2)], [100, round(price * 0.88, 2)]],
                "lines": [
                    {"lineNo": n + 1, "sku": sku if n == 0 else f"{sku}-{n}", "quantity": rint(rng, 1, 50)}
                    for n in range(rint(rng, 1, 3))
                ],
                "validDays": q * 7 + 7,
            }
        )
    return quotes


def _spot_buy_received(rng: random.Random, t: int, t0: int, sku: str, cost: float) -> dict[str, Any]:
    """The supplier contacts and purchase-order forms a spot buy receives (often no contact)."""
    contacts = [
        {"id": ulid(rng, t), "name": pick(rng, PEOPLE)[0], "language": "en"}
        for _ in range(pick(rng, (0, 0, 1)))
    ]
    forms = [
        {
            "metadata": {"formId": ulid(rng, t0 - DAY), "formName": "PO Form"},
            "payload": {
                "businessNeed": "Spot Buy",
                "expectedDeliveryDate": iso_ms(t0 + rint(rng, 1, 10) * DAY),
                "item": sku,
                "itemCost": cost,
                "quantity": rint(rng, 1, 20),
            },
        }
        for _ in range(pick(rng, (1, 1, 2)))
    ]
    empty_contact = {"companyId": "", "companyName": "", "id": "", "language": "en", "name": "", "value": ""}
    return {"contact": empty_contact, "contacts": contacts, "forms": forms}


def _script_spot_buy(rng: random.Random, t0: int) -> tuple[list[Event], str]:
    """An order found, a stock check, supplier quotes after a long wait, a confirmed purchase order."""
    order_id = f"EON{rrange(rng, 1000, 99999)}"
    sku = str(rrange(rng, 10_000_000, 99_999_999))
    cost = round(rng.uniform(5, 500), 2)
    t = t0 + rint(rng, 200, 4000)
    events: list[Event] = [(t0, "order.found", {"orderId": order_id}), (t, "order.spotbuy.pending", {})]
    t += rint(rng, 2000, 40_000)
    events.append((t, "order.spotbuy.received", _spot_buy_received(rng, t, t0, sku, cost)))
    t = _second_after(t, rng, 1000, 20_000)
    in_stock = rng.random() < 0.3
    warehouses = rng.sample(_WAREHOUSES, pick(rng, (0, 1, 2, 2, 3)))
    events.append((t, "check_stock", _cloud(t, {"inStock": in_stock, "warehouses": warehouses})))
    t += wait(rng, 3600, 1.6, 4 * DAY)
    stock = 0 if not in_stock else rint(rng, 1, 40)
    feedback = {"productId": sku, "stock": stock, "quotes": _quotes(rng, sku, cost)}
    events.append((t, "celonis_postaction_feedback", feedback))
    t += rint(rng, 5000, 30 * MINUTE)
    confirmed = {
        "poNumber": f"PO-{rrange(rng, 100000, 999999)}",
        "approvedBy": {"name": pick(rng, PEOPLE)[0]},
    }
    events.append((t, "Order.SpotBuy-Confirmed", confirmed))
    return events, order_id


def _order_created(rng: random.Random, order_id: str) -> dict[str, Any]:
    """A customer order of 1-4 entries, each from a warehouse."""
    entries: list[dict[str, Any]] = [
        {
            "sku": str(rrange(rng, 10_000_000, 99_999_999)),
            "quantity": rint(rng, 1, 12),
            "warehouse": pick(rng, _WAREHOUSES),
        }
        for _ in range(rint(rng, 1, 4))
    ]
    total = round(sum(e["quantity"] for e in entries) * rng.uniform(8, 120), 2)
    currency = pick(rng, _CURRENCIES)
    customer = {"id": f"C{rrange(rng, 10000, 99999)}", "email": "buyer@example.com"}
    return {
        "order": {
            "id": order_id,
            "customer": customer,
            "entries": entries,
            "total": {"amount": total, "currency": currency},
            "tags": [],
        }
    }


def _shipments(order_id: str, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One shipment per warehouse the order's entries come from."""
    by_warehouse: dict[str, list[dict[str, Any]]] = {}
    for e in entries:
        by_warehouse.setdefault(e["warehouse"], []).append({"sku": e["sku"], "quantity": e["quantity"]})
    return [
        {"shipmentId": f"SH-{order_id}-{n + 1}", "warehouse": warehouse, "entries": items}
        for n, (warehouse, items) in enumerate(by_warehouse.items())
    ]


def _dispatched(rng: random.Random, t: int, shipments: list[dict[str, Any]]) -> dict[str, Any]:
    tracking = [
        {
            "shipmentId": s["shipmentId"],
            "trackingNumber": f"00340{rrange(rng, 10**9, 10**10)}",
            "history": [[iso_ms(t - 2 * HOUR), "picked"], [iso_ms(t), "handed_over"]],
        }
        for s in shipments
    ]
    return {
        "carrier": pick(rng, ("DHL", "DPD", "UPS")),
        "shipments": [s["shipmentId"] for s in shipments],
        "tracking": tracking,
    }


def _script_order_split(rng: random.Random, t0: int) -> tuple[list[Event], str]:
    """An order split into one shipment per warehouse, paid, then dispatched."""
    order_id = f"EON{rrange(rng, 1000, 99999)}"
    created = _order_created(rng, order_id)
    order = created["order"]
    events: list[Event] = [(t0, "order.created", created)]
    t = _second_after(t0, rng, 500, 10_000)
    shipments = _shipments(order_id, order["entries"])
    events.append((t, "split_order", _cloud(t, {"splitCount": len(shipments), "shipments": shipments})))
    t += wait(rng, 20 * 60, 1.2, 12 * HOUR)
    payment = {
        "paymentId": f"PAY-{rrange(rng, 10**6, 10**7)}",
        "amount": order["total"]["amount"],
        "currency": order["total"]["currency"],
        "method": "card",
    }
    events.append((t, "Payment-Captured", payment))
    t += wait(rng, 8 * 3600, 1.0, 3 * DAY)
    events.append((t, "shipment.Dispatched", _dispatched(rng, t, shipments)))
    return events, order_id


def _script_stock_sync(rng: random.Random, t0: int) -> tuple[list[Event], str]:
    """A nightly timer reads the inventory of 1-3 warehouses and syncs it (sometimes a locked item)."""
    events: list[Event] = [(t0, "_timer-event", {"firedAt": iso_ms(t0), "timeExpression": iso_s(t0)})]
    t = _second_after(t0, rng, 500, 5000)
    warehouses = rng.sample(_WAREHOUSES, rint(rng, 1, 3))
    items = [
        {
            "sku": str(rrange(rng, 10_000_000, 99_999_999)),
            "onHand": rint(rng, 0, 500),
            "reserved": rint(rng, 0, 20),
            "bins": [[f"A-{rint(rng, 1, 40):02d}", rint(rng, 0, 50)] for _ in range(rint(rng, 0, 2))],
        }
        for _ in range(rint(rng, 0, 4))
    ]
    inventory = {"warehouses": warehouses, "items": items, "truncated": False}
    events.append((t, "fetch_inventory", _cloud(t, inventory)))
    t += rint(rng, 10 * SECOND, 5 * MINUTE)
    errors = [] if rng.random() < 0.8 else [{"sku": items[0]["sku"] if items else "", "reason": "locked"}]
    completed = {"counts": {"updated": len(items), "skipped": rint(rng, 0, 3)}, "errors": errors}
    events.append((t, "inventory.Sync-Completed", completed))
    return events, ""


def _quote_requested(rng: random.Random, quote_id: str, sku: str, target: float) -> dict[str, Any]:
    return {
        "quoteId": quote_id,
        "customer": {"id": f"C{rrange(rng, 10000, 99999)}", "companyName": "Globex GmbH", "country": "DE"},
        "items": [{"sku": sku, "quantity": rint(rng, 1, 500), "targetPrice": target}],
        "attachments": [],
        "notes": "",
    }


def _script_quote_approval(rng: random.Random, t0: int) -> tuple[list[Event], str]:
    """A quote request, scored, waits for 1-2 approvers; granted (then supplier quotes) or rejected."""
    quote_id = f"RFQ-{rrange(rng, 10000, 99999)}"
    sku = str(rrange(rng, 10_000_000, 99_999_999))
    target = round(rng.uniform(20, 2000), 2)
    events: list[Event] = [(t0, "quote.requested", _quote_requested(rng, quote_id, sku, target))]
    t = _second_after(t0, rng, 500, 5000)
    score = round(rng.random(), 3)
    flags = [] if score > 0.3 else ["low-margin"]
    scored = {"score": score, "flags": flags, "matrix": [[0.1, 0.2], [0.3, 0.4]]}
    events.append((t, "score_quote", _cloud(t, scored)))
    t += rint(rng, SECOND, 30 * SECOND)
    approvers = [f"{p[1]}@example.com" for p in rng.sample(PEOPLE, rint(rng, 1, 2))]
    events.append((t, "quote.approval-Required", {"approvers": approvers, "levels": [[1000, 1], [10000, 2]]}))
    t += wait(rng, 6 * 3600, 1.2, 5 * DAY)
    if rng.random() >= 0.8:
        rejected = {"by": approvers[0], "comment": "price too low", "limits": {"max": target}}
        events.append((t, "approval.rejected", rejected))
        return events, quote_id
    events.append((t, "Approval.Granted", {"by": approvers[0], "comment": "", "limits": {}}))
    t += rint(rng, SECOND, 10 * MINUTE)
    feedback = {"productId": sku, "stock": rint(rng, 0, 100), "quotes": _quotes(rng, sku, target)}
    events.append((t, "celonis_postaction_feedback", feedback))
    return events, quote_id


KINDS: dict[str, Callable[[random.Random, int], tuple[list[Event], str]]] = {
    "spot_buy": _script_spot_buy,
    "order_split": _script_order_split,
    "stock_sync": _script_stock_sync,
    "quote_approval": _script_quote_approval,
}
