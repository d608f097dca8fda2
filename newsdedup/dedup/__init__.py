"""The service's operations, as the HTTP API and the command line call them.

:class:`Dedup` is both sides over one Redis client: :class:`~newsdedup.dedup.writes.Writes`
(submit, delete, retry) and :class:`~newsdedup.dedup.reads.Reads` (article, cluster, clusters,
stats, check).
"""

from __future__ import annotations

from newsdedup.dedup.reads import Reads
from newsdedup.dedup.writes import Writes


class Dedup(Writes, Reads):
    """Both sides over one Redis client and configuration (see :class:`~newsdedup.dedup.base.Service`)."""


__all__ = ["Dedup"]
