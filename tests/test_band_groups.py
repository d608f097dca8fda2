"""The band groups against a real Redis (and a real Redis Cluster): declared keys, stale clients, migration.

Clients address buckets from the group state they last saw; these tests make that state stale
on purpose (two BandTable objects, one of which grows the table behind the other's back) and
check that nothing is lost, nothing lands in a wrong bucket and no undeclared key is touched.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import redis
from redis.crc import key_slot

from newsdedup import keys
from newsdedup.articles import parse_article
from newsdedup.config import Config
from newsdedup.dedup import Dedup
from newsdedup.index.band_table import BandTable
from newsdedup.retention.removal import Removal
from newsdedup.storage.records import n4
from newsdedup.storage.scripts import Scripts
from tests.procs import (
    band_count,
    band_entries,
    band_states,
    band_table,
    check_index_invariants,
    pending_unbands,
)
from tests.test_band_table import fill
from tests.test_schema_migration import to_old_prefix

LUA = Path(__file__).resolve().parent.parent / "newsdedup" / "storage" / "lua"


def table(r: redis.Redis, cfg: Config) -> BandTable:
    return BandTable(r, cfg, Scripts(r))


def sigs(count: int, num_perm: int, seed: int) -> npt.NDArray[np.uint32]:
    return np.random.default_rng(seed).integers(0, 2**32, size=(count, num_perm), dtype=np.uint32)


def insert(bt: BandTable, r: redis.Redis, first: int, signatures: npt.NDArray[np.uint32]) -> list[list[int] | None]:
    """Index articles first, first+1, ... (their records hold only a version) with these signatures."""
    rows = []
    for k, sig in enumerate(signatures):
        n = first + k
        r.hset(keys.article(n), "ver", 1)
        rows.append((keys.article(n), n, 1, sig, {"iver": 1}))
    return bt.insert(rows)


def test_group_tags_are_chosen_in_the_upper_two_thirds_and_apart_from_the_data() -> None:
    slots = [key_slot(keys.band_state(g).encode()) for g in range(keys.BAND_GROUPS)]
    for g, slot in enumerate(slots):  # the j-th sixth of [5461, 16384)
        assert 5461 + g * 10923 // 6 <= slot < 5461 + (g + 1) * 10923 // 6
        assert key_slot(keys.bucket(g, g, 12345).encode()) == slot
    assert len(set(slots)) == keys.BAND_GROUPS and key_slot(b"{nd}") < 5461


def test_every_key_of_a_group_call_is_in_the_groups_slot(redis_client: redis.Redis, config: Config) -> None:
    bt = table(redis_client, config.replace(lsh_bucket_bits=2, lsh_bucket_load=4))
    insert(bt, redis_client, 1, sigs(40, config.num_perm, 1))  # states past level 2: splits declared too
    values = bt.banding.band_values(sigs(64, config.num_perm, 2))
    todo = {i: list(range(len(bt.groups.bands_of[0]))) for i in range(64)}
    for mode in ("i", "l", "u"):
        for g in range(keys.BAND_GROUPS):
            state = (bt.groups.state or bt.groups.refresh())[g]
            _, (names, args) = bt.groups._call(mode, g, state, {i: p[:len(bt.groups.bands_of[g])]
                                                                 for i, p in todo.items()},
                                               [n4(i) for i in range(64)], values)
            assert names[0] == keys.band_state(g)
            assert {key_slot(k.encode()) for k in names} == {key_slot(names[0].encode())}
            assert len(names) == len(set(names))
            assert len(names) - 1 == len(args[5]) // 5  # one address per declared bucket


def _key_args(text: str) -> list[str]:
    """The key argument of every redis.call in a Lua source."""
    call = re.compile(r'redis\.call\("\w+",\s*(key\([^)]*\)|unpack\([^)]*\)|[^,)]+)')
    return [m.group(1).strip() for m in call.finditer(text)]


def _declared(ident: str, text: str) -> bool:
    """Whether every value ``ident`` takes in ``text`` comes straight from KEYS (never built)."""
    from_keys = re.compile(r"^(KEYS\[.+\]|key\(.+\))$")
    sources: list[str] = []
    for lhs, rhs in re.findall(r"^\s*(?:local\s+)?(\w+(?:\s*,\s*\w+)*)\s*=(?!=)\s*([^\n]+)", text, re.M):
        names = [x.strip() for x in lhs.split(",")]
        if ident in names:
            parts = [x.strip() for x in re.split(r",\s*(?![^()\[\]]*[)\]])", rhs)]
            sources.append(parts[names.index(ident)] if names.index(ident) < len(parts) else "")
    for fname, params in re.findall(r"function\s+(\w+)\(([^)]*)\)", text):  # a parameter: every call site
        names = [x.strip() for x in params.split(",")]
        if ident in names:
            for call in re.findall(rf"\b{fname}\(([^)]*\)?)", text)[1:]:
                sources.append(call.split(",")[names.index(ident)].strip())
    return bool(sources) and all(from_keys.match(s) for s in sources)


def test_no_lua_script_builds_a_key_name() -> None:
    """Every key a script touches comes from KEYS (what Redis Cluster routes on), never from ``..``."""
    for path in sorted(LUA.glob("*.lua")):
        if path.name == "band_table.lua":
            continue  # a library: checked in front of band_group.lua, where its functions are called
        text = path.read_text(encoding="utf-8")
        if path.stem == "band_group":
            text = (LUA / "band_table.lua").read_text(encoding="utf-8") + text
        for arg in _key_args(text):
            if re.match(r"^(KEYS\[.+\]|key\(.+\))$", arg):
                continue
            if arg == "unpack(ks)":  # transact's del: ks[j] = key(a[j])
                assert re.search(r"ks\[j\] = key\(a\[j\]\)", text), path
                continue
            assert re.match(r"^\w+$", arg) and _declared(arg, text), f"{path.name}: key {arg!r} is not from KEYS"


def test_a_stale_client_defers_what_split_and_still_finds_the_copy(redis_client: redis.Redis,
                                                                  config: Config) -> None:
    cfg = config.replace(lsh_bucket_bits=0, lsh_bucket_load=4)
    a, b = table(redis_client, cfg), table(redis_client, cfg)
    a.groups.refresh(), b.groups.refresh()  # both start from level 0: one bucket per band
    originals = sigs(60, cfg.num_perm, 3)
    insert(a, redis_client, 1, originals)  # a splits every group many times; b does not know
    assert all(st["level"] >= 3 for st in band_states(redis_client))
    assert b.groups.state is not None and all(st[0] == 0 for st in b.groups.state)
    found = insert(b, redis_client, 100, originals[[5, 17, 42]])  # exact copies, addressed at level 0
    assert [f and f[0] for f in found] == [6, 18, 43]
    assert b.groups.resent > 0  # entries whose bucket had split were deferred and sent again
    assert [st[:2] for st in b.groups.state] == [(st["level"], st["next"]) for st in band_states(redis_client)]
    entries = band_entries(redis_client)  # every entry at the address its value has now
    assert len(entries) == len(set(entries)) == 63 * band_count(cfg)
    assert sorted(b.lookup(originals[17])) == [18, 101]
    assert b.unindex_many([(100, originals[5]), (101, originals[17])]) == 2 * band_count(cfg)
    assert len(band_entries(redis_client)) == 61 * band_count(cfg)


def test_splits_touch_only_declared_buckets_and_catch_up_later(redis_client: redis.Redis, config: Config) -> None:
    big = table(redis_client, config.replace(lsh_bucket_bits=0, lsh_bucket_load=100_000))
    insert(big, redis_client, 1, sigs(30, config.num_perm, 4))  # 30 entries per band, one bucket each
    assert all(st["level"] == 0 and st["next"] == 0 for st in band_states(redis_client))
    small = table(redis_client, config.replace(lsh_bucket_bits=0, lsh_bucket_load=4))  # this one wants splits
    # a call addressed from a wrong state (level 5, next 20): the splits it declares are not the
    # ones the table needs (buckets 0 and 1), so the script inserts what it can and splits nothing
    g = 0
    nb = len(small.groups.bands_of[g])
    values = small.banding.band_values(sigs(1, config.num_perm, 5))
    _, call = small.groups._call("i", g, (5, 20, 30 * nb), {0: list(range(nb))}, [n4(99)], values)
    assert not {keys.bucket(g, band, 1) for band in small.groups.bands_of[g]} <= set(call[0])
    res = small.scripts.band_groups([call])[0]
    assert (int(res[2]), int(res[3])) == (0, 0)  # level, next: no split without its keys declared
    # deferred: every value whose bucket at level 0 (bucket 0) the wrong state did not declare
    assert len(res[1][0]) == sum(keys.bucket(g, band, 0) not in call[0] for band in small.groups.bands_of[g]) > 0
    # the same client with the state the script returned: declared right, it splits in steps
    small.groups.state = None
    insert(small, redis_client, 200, sigs(1, config.num_perm, 6))
    assert band_states(redis_client)[g]["next"] > 0 or band_states(redis_client)[g]["level"] > 0
    band_table(redis_client)


def test_two_copies_inserted_at_the_same_moment_by_two_clients_always_meet(redis_client: redis.Redis,
                                                                           config: Config) -> None:
    cfg = config.replace(lsh_bucket_bits=0, lsh_bucket_load=4)
    base = sigs(200, cfg.num_perm, 7)
    tables = [table(redis.Redis.from_url(cfg.redis_url), cfg) for _ in range(2)]
    for t in tables:
        t.groups.refresh()
    results: list[list[list[int] | None]] = [[], []]
    start = threading.Barrier(2)

    errors: list[BaseException] = []

    def work(w: int) -> None:
        start.wait()
        try:
            for k in range(0, 200, 8):  # worker w inserts copy w of each article: numbers 1000 * (w + 1) + k
                results[w].extend(insert(tables[w], tables[w].r, 1000 * (w + 1) + k, base[k:k + 8]))
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for k in range(200):
        one, two = results[0][k], results[1][k]
        assert one is not None and two is not None
        assert 2000 + k in one or 1000 + k in two, f"copies of article {k} missed each other"
    entries = band_entries(redis_client)
    assert len(entries) == len(set(entries)) == 400 * band_count(cfg)


def to_single_table(r: redis.Redis, config: Config) -> str:
    """Rewrite the band groups as the single table of the previous layout; returns its parameters.

    The old table: one state for all bands (level 2, next 1 here), buckets ``nd:band:<band>:<bucket>``.
    """
    level, nxt = 2, 1
    total = 0
    for band, buckets in band_table(r).items():
        for entries in buckets.values():
            for value, member in entries:
                addr = value % (1 << level)
                if addr < nxt:
                    addr = value % (1 << (level + 1))
                r.append(f"{keys.LEGACY_BAND_PREFIX}{band}:{addr}",
                         value.to_bytes(4, "little") + member.to_bytes(4, "little"))
                total += 1
    r.delete(*r.keys("{nd.g*:band:*"), *(keys.band_state(g) for g in range(keys.BAND_GROUPS)))
    r.hset(keys.LEGACY_BANDS, mapping={"level": level, "next": nxt, "entries": total})
    b = BandTable(r, config, Scripts(r))
    old = b.index_params().replace(f" groups={keys.BAND_GROUPS}", "")
    r.hset(keys.META, "index", old)
    return old


def test_a_single_table_index_is_moved_into_the_groups(redis_client: redis.Redis, config: Config) -> None:
    texts = fill(Dedup(redis_client, config), config)
    before = sorted(band_entries(redis_client))
    probe = parse_article({"text": texts[3]})[0]
    want = Dedup(redis_client, config).check(probe)["duplicates"]
    to_single_table(redis_client, config)
    assert redis_client.keys(keys.LEGACY_BAND_PREFIX + "*") and not redis_client.keys("{nd.g*")

    d = Dedup(redis_client, config.replace(lsh_bucket_load=4))  # the moved groups also split on the way
    assert d.check(probe)["duplicates"] == want
    assert redis_client.hget(keys.META, "index") == d.engine.index.index_params().encode()
    assert not redis_client.keys(keys.LEGACY_BAND_PREFIX + "*") and not redis_client.exists(keys.LEGACY_BANDS)
    assert sorted(band_entries(redis_client)) == before
    check_index_invariants(redis_client)


@pytest.mark.slow
def test_group_calls_run_on_a_real_redis_cluster(redis_cluster: object, config: Config) -> None:
    """Insert, lookup and removal through a cluster client: no CROSSSLOT, nothing lost."""
    client = redis_cluster.client()  # type: ignore[attr-defined]
    for g in range(keys.BAND_GROUPS):  # this test's keys only (the cluster is shared by the session)
        client.delete(keys.band_state(g))
        for node in client.get_primaries():
            for key in client.scan_iter(match="{" + keys.BAND_GROUP_TAGS[g] + "}:band:*", target_nodes=node):
                client.delete(key)
    bt = BandTable(client, config.replace(lsh_bucket_bits=0, lsh_bucket_load=4), Scripts(client))
    signatures = sigs(80, config.num_perm, 8)
    values = bt.banding.band_values(signatures)
    bt.groups.run("i", [n4(n) for n in range(1, 81)], values)
    found, _ = bt.groups.run("i", [n4(n) for n in range(101, 111)], values[:10])  # copies of 1..10
    assert [sorted(set(np.frombuffer(f, dtype="<u4").tolist())) for f in found] == [[n] for n in range(1, 11)]
    assert all(table_state[0] >= 2 for table_state in bt.groups.refresh())  # every group split
    assert bt.lookup(signatures[3]) == [4, 104]
    assert bt.unindex_many([(n, signatures[n - 1]) for n in range(1, 81)]) == 80 * bt.banding.bands
    assert bt.lookup(signatures[3]) == [104]
    client.close()


def test_a_removal_interrupted_before_its_band_entries_owes_them_and_the_next_one_pays(
        redis_client: redis.Redis, config: Config) -> None:
    fill(Dedup(redis_client, config), config)
    n = int(redis_client.hget(keys.IDS, "o0") or 0)
    removal = Removal(redis_client, config)
    txn, done = removal.txn([n], expired=False)
    assert done.ids == ["o0"] and removal.engine.scripts.run(txn)  # the data transaction, then a crash
    assert pending_unbands(redis_client) == {n} and n in {m for _, m in band_entries(redis_client)}
    check_index_invariants(redis_client)  # entries of a removed article: allowed while owed
    removal.remove([])  # any later removal settles the debt first
    assert pending_unbands(redis_client) == set() and n not in {m for _, m in band_entries(redis_client)}
    check_index_invariants(redis_client)


def test_a_single_table_index_under_the_old_prefix_is_renamed_then_moved(redis_client: redis.Redis,
                                                                         config: Config) -> None:
    """Data of the version before the cluster schema: nd:* keys, one band table (nd:bands, nd:band:*)."""
    texts = fill(Dedup(redis_client, config), config)
    before = sorted(band_entries(redis_client))
    probe = parse_article({"text": texts[4]})[0]
    want = Dedup(redis_client, config).check(probe)["duplicates"]
    to_single_table(redis_client, config)
    to_old_prefix(redis_client)
    assert redis_client.exists(keys.OLD_PREFIX + "bands") and redis_client.keys(keys.OLD_PREFIX + "band:*")

    d = Dedup(redis_client, config)
    assert d.check(probe)["duplicates"] == want
    assert not redis_client.keys(keys.OLD_PREFIX + "*") and not redis_client.keys(keys.LEGACY_BAND_PREFIX + "*")
    assert sorted(band_entries(redis_client)) == before
    check_index_invariants(redis_client)
