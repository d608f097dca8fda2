"""Article blobs: the bulky per-article fields, kept apart from the article hash in a partition slot.

The article hash (``{nd}:a:<n>``) holds what transactions check and small fields; signature, kept
text, page, line marks and repeated blocks (``keys.BLOB_FIELDS``: 80 % of an article's bytes per
``bench/blob_memory.py``) live in ``keys.blob(n)``, spread over 48 partition slots so that memory
spreads over the masters of a Redis Cluster. A blob is one key, so every call here is one command or one one-key script
per article, sent in a non-transactional pipeline (a cluster client routes each to its node).

Order keeps readers right without a cross-slot transaction:
- the worker writes the blob *before* the step that makes the article visible (band entries,
  ``iver``): whoever finds the article through the band table finds its signature;
- a removal deletes the blob *after* the transaction that removed the article. A crash in
  between leaves an orphan blob: harmless (nothing points at it, numbers are never reused);
- a blob records the version its fields belong to and is only replaced by the same or a newer
  version (``blob_put.lua``): a slow worker of an older version cannot overwrite a newer blob.
  A worker whose article moved on or went away meanwhile takes its own write back (``drop_if``).

Articles stored before blobs existed hold these fields in the article hash. Readers read those
fields there as well (same call as the other fields) and use them when the article has no blob;
``migrate_blobs`` moves them into blobs in chunks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from newsdedup import keys
from newsdedup.storage.scripts import source

CHUNK = 1000  # commands per pipeline round trip

Row = Mapping[bytes, bytes]


def write(client: Any, items: Sequence[tuple[int, int, Mapping[str, Any]]]) -> list[bool]:
    """Replace the blobs of (article number, version, fields); False where a newer version's blob is there."""
    out: list[bool] = []
    put = source("blob_put")
    for i in range(0, len(items), CHUNK):
        pipe = client.pipeline(transaction=False)
        for n, ver, fields in items[i:i + CHUNK]:
            args: list[Any] = [ver]
            for k, v in fields.items():
                args.extend((k, v))
            pipe.execute_command("EVAL", put, 1, keys.blob(n), *args)  # a cluster pipeline has no eval()
        out.extend(bool(int(r)) for r in pipe.execute())
    return out


def read(client: Any, ns: Sequence[int], fields: Sequence[str], legacy: Sequence[Row] | None = None
         ) -> list[dict[bytes, bytes]]:
    """``fields`` of each article's blob (those present), one pipelined HMGET per article.

    ``legacy``: the same articles' hashes as already read (with these fields): used for an article
    that has no blob (stored before blobs existed).
    """
    out: list[dict[bytes, bytes]] = []
    names = [f.encode() for f in fields]
    for i in range(0, len(ns), CHUNK):
        pipe = client.pipeline(transaction=False)
        for n in ns[i:i + CHUNK]:
            pipe.hmget(keys.blob(n), "ver", *fields)
        for k, row in enumerate(pipe.execute(), start=i):
            if row[0] is not None:
                out.append({f: v for f, v in zip(names, row[1:]) if v is not None})
            else:
                old = legacy[k] if legacy is not None else {}
                out.append({f: old[f] for f in names if old.get(f) is not None})
    return out


def merged(client: Any, ns: Sequence[int], recs: Sequence[dict[bytes, bytes]], fields: Sequence[str]) -> None:
    """Put ``fields`` of each article's blob into its record as read from the article hash (in place)."""
    for rec, got in zip(recs, read(client, ns, fields, recs)):
        for f in fields:
            rec.pop(f.encode(), None)
        rec.update(got)


def drop(client: Any, ns: Sequence[int]) -> None:
    """Delete these articles' blobs (after the transaction that removed the articles)."""
    for i in range(0, len(ns), CHUNK):
        pipe = client.pipeline(transaction=False)
        for n in ns[i:i + CHUNK]:
            pipe.delete(keys.blob(n))  # one key per DEL: blobs of a batch sit in different slots
        pipe.execute()


def drop_if(client: Any, items: Sequence[tuple[int, int]]) -> None:
    """Delete the blobs of (article number, version) that still hold that version's fields."""
    rm = source("blob_drop")
    for i in range(0, len(items), CHUNK):
        pipe = client.pipeline(transaction=False)
        for n, ver in items[i:i + CHUNK]:
            pipe.execute_command("EVAL", rm, 1, keys.blob(n), ver)
        pipe.execute()


def drop_legacy(client: Any, ns: Sequence[int]) -> None:
    """Delete the blob fields an article hash kept from before blobs (once its blob is written)."""
    for i in range(0, len(ns), CHUNK):
        pipe = client.pipeline(transaction=False)
        for n in ns[i:i + CHUNK]:
            pipe.hdel(keys.article(n), *keys.BLOB_FIELDS)
        pipe.execute()


def migrate_blobs(client: Any, chunk: int = 500) -> int:
    """Move the blob fields of articles stored before blobs into their blobs; the number moved.

    Safe while workers run and resumable: each article's blob is written (as the version the
    fields were indexed at, ``iver``, never over a blob that exists) before the fields leave the
    article hash, and readers use the article hash only when there is no blob.
    """
    top = int(client.get(keys.SEQ) or 0)
    moved = 0
    for lo in range(1, top + 1, chunk):
        ns = list(range(lo, min(top, lo + chunk - 1) + 1))
        pipe = client.pipeline(transaction=False)
        for n in ns:
            pipe.hmget(keys.article(n), "iver", *keys.BLOB_FIELDS).exists(keys.blob(n))
        replies = pipe.execute()
        todo, fresh = [], []
        for k, n in enumerate(ns):
            row, has_blob = replies[2 * k], replies[2 * k + 1]
            fields = {f: v for f, v in zip(keys.BLOB_FIELDS, row[1:]) if v is not None}
            if not fields:
                continue
            todo.append(n)
            if not has_blob:
                fresh.append((n, int(row[0] or 0), fields))
        write(client, fresh)
        drop_legacy(client, todo)
        moved += len(todo)
    return moved
