"""Fast, explicit-rng random helpers and id formats (ULID-like ids, UUIDs).

Every helper takes the ``random.Random`` to draw from; nothing touches the global rng.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_TIME_MASK = (1 << 48) - 1
# RFC 4122 version 4 / variant bits, as uuid.UUID(int=..., version=4) sets them
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID_V4 = (0x4000 << 64) | (0x8000 << 48)

T = TypeVar("T")


def ulid(rng: random.Random, ms: int) -> str:
    """A ULID-like id: 48-bit millisecond time + 80 random bits in 26 Crockford base32 chars."""
    n = ((ms & _ULID_TIME_MASK) << 80) | rng.getrandbits(80)
    out = [""] * 26
    for i in range(25, -1, -1):
        out[i] = CROCKFORD[n & 31]
        n >>= 5
    return "".join(out)


def rint(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi], faster than ``Random.randint``: the benchmark's generator draws
    several per event (docs/bench/findings.md has the figure)."""
    return lo + int(rng.random() * (hi - lo + 1))


def rrange(rng: random.Random, lo: int, hi: int | None = None) -> int:
    """Uniform integer in [lo, hi) (or [0, lo)), like ``Random.randrange`` but faster."""
    if hi is None:
        lo, hi = 0, lo
    return lo + int(rng.random() * (hi - lo))


def pick(rng: random.Random, seq: Sequence[T]) -> T:
    """A uniform element of a non-empty sequence (fast ``Random.choice``)."""
    return seq[int(rng.random() * len(seq))]


def uuid_from(rng: random.Random) -> str:
    """A lower-case version-4 UUID string drawn from the rng (same text as ``uuid.UUID``)."""
    h = "%032x" % ((rng.getrandbits(128) & _UUID_CLEAR) | _UUID_V4)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
