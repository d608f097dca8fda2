"""Integration tests of the compare-and-set transaction script against a real Redis."""

from __future__ import annotations

from typing import Any

from newsdedup.storage.scripts import Scripts
from newsdedup.storage.txn import Txn


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


def test_batch_reads_return_what_pipelines_would(redis_client: Any) -> None:
    r = redis_client
    scripts = Scripts(r)
    r.hset("t:h1", mapping={"a": "1", "b": "x"})
    r.hset("t:h2", mapping={"b": "y"})
    r.set("t:p1", b"payload")
    assert scripts.hmget_many(["t:h1", "t:h2", "t:none"], ["a", "b"]) == [[b"1", b"x"], [None, b"y"], [None, None]]
    assert scripts.load([("t:h1", "t:p1"), ("t:none", "t:p2")], ["a", "b", "c"]) == [
        ({b"a": b"1", b"b": b"x"}, b"payload"), ({}, None)]
    r.hset("t:c", "v", 3)
    r.sadd("t:cm", 7, 12)
    state = scripts.cluster_state([("t:c", "t:cm"), ("t:c0", "t:cm0")])
    assert state[0][0] == b"3" and sorted(state[0][1]) == [b"12", b"7"]
    assert state[1] == (None, [])
    many = [f"t:m{i}" for i in range(2500)]  # beyond one call's chunk
    for k in many[::500]:
        r.hset(k, "a", k)
    got = scripts.hmget_many(many, ["a"])
    assert len(got) == 2500 and [g[0] for g in got[::500]] == [k.encode() for k in many[::500]]


def test_batch_removals_of_records_and_counts(redis_client: Any) -> None:
    """cut_many takes several records out in one pass (absent or repeated ones are harmless);
    hdecr takes counts off, deleting fields that reach 0 and never going below."""
    r = redis_client
    scripts = Scripts(r)
    r.set("t:heads", b"a\x1f1\x1eba\x1f2\x1ec\x1f3\x1ea\x1f14\x1e")
    r.set("t:heads2", b"x\x1f9\x1e")
    r.hset("t:bp", mapping={"x": 3, "y": 2, "z": 1})
    cuts = [b"a\x1f1\x1e", b"c\x1f3\x1e", b"zz\x1f9\x1e", b"a\x1f1\x1e", b"a\x1f2\x1e"]
    txn = Txn().cut_many("t:heads", cuts, "\x1e")
    txn.cut_many("t:heads2", [b"x\x1f9\x1e"], "\x1e").hdecr("t:bp", {b"x": 1, b"y": 2, b"z": 5, b"w": 1})
    assert scripts.run(txn)
    assert r.get("t:heads") == b"ba\x1f2\x1ea\x1f14\x1e" and not r.exists("t:heads2")
    assert r.hgetall("t:bp") == {b"x": b"2"}
