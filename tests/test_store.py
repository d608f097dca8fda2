"""Integration tests of the compare-and-set transaction script against a real Redis."""

from __future__ import annotations

from typing import Any

from newsdedup.store import Scripts, Txn


def test_checks_guard_every_write(redis_client: Any) -> None:
    r = redis_client
    r.hset("t:a", mapping={"ver": "3", "status": "queued"})
    scripts = Scripts(r)
    stale = Txn().expect_fields("t:a", {"ver": 3, "status": "queued", "cluster": "c9"})
    stale.hset("t:a", {"status": "done"}).zadd("t:z", 1, "x", "y").delete("t:a")
    assert scripts.run(stale) is False
    assert r.hget("t:a", "status") == b"queued" and not r.exists("t:z")  # nothing written
    ok = Txn().expect_fields("t:a", {"ver": 3, "status": "queued", "cluster": None})
    ok.hset("t:a", {"status": "done"}).zadd("t:z", 5, "x", "y", "w").zrem("t:z", "w", "nope")
    assert scripts.run(ok) is True
    assert r.hget("t:a", "status") == b"done"
    assert r.zrange("t:z", 0, -1, withscores=True) == [(b"x", 5.0), (b"y", 5.0)]


def test_batched_writes(redis_client: Any) -> None:
    r = redis_client
    scripts = Scripts(r)
    r.set("t:k1", 1)
    r.set("t:k2", 2)
    r.xgroup_create("t:q", "g", id="0", mkstream=True)
    ids = [r.xadd("t:q", {"n": i}) for i in range(1500)]
    r.xreadgroup("g", "w", {"t:q": ">"}, count=2000)
    txn = Txn().delete("t:k1", "t:k2").xack("t:q", "g", *ids[:1200])
    txn.hincrn("t:bp", {b"#docs": 2, b"shape": 1}).hincrn("t:bp", {b"shape": 4})
    assert scripts.run(txn)
    assert not r.exists("t:k1", "t:k2")
    assert r.xlen("t:q") == 300 and r.xpending("t:q", "g")["pending"] == 300  # acked ones deleted too
    assert r.hgetall("t:bp") == {b"#docs": b"2", b"shape": b"5"}
