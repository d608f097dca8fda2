"""What one queued article carries from stage to stage while a worker processes it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from newsdedup.text.page import Page


@dataclass
class Features:
    """What the engine derives from one page."""

    page: Page
    boilerplate: set[int]
    tokens: int
    shingles: npt.NDArray[np.uint64]
    sig: npt.NDArray[np.uint32] | None = None

    @property
    def size(self) -> int:
        return len(self.shingles)


@dataclass
class Edge:
    n: int
    similarity: float
    containment: float  # the larger of the two containments

    @property
    def score(self) -> float:
        return max(self.similarity, self.containment)


@dataclass
class Job:
    """One stream entry being processed."""

    entry_id: bytes
    n: int
    ver: int
    record: dict[bytes, bytes] = field(default_factory=dict)
    features: Features | None = None
    candidates: list[int] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)
    source: str = "_"
    packed_text: bytes | None = None  # the submitted text, compressed as kept text is
    skip: str | None = None  # why the entry needs no work (acknowledged only)
    error: str | None = None  # permanent failure (dead-lettered at once)
    rid: str = ""  # the request id that queued it (X-Request-ID), for logs and events
