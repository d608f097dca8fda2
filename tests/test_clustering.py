"""The clustering policy: joins, guarded merges, stable ids."""

from __future__ import annotations

from newsdedup.clusters.policy import Placement, plan


def test_new_article_joins_its_duplicates_cluster() -> None:
    p = plan({1: "c1", 2: "c1", 5: "c5"}, {"c1": {1, 2}, "c5": {5}}, [Placement(5, {1: 0.9})], 0.5)
    assert p.cluster_of[5] == "c1" and p.members["c1"] == {1, 2, 5}


def test_one_weak_edge_does_not_fuse_two_large_clusters() -> None:
    cof = {m: "c1" for m in (1, 2, 3, 4)} | {m: "c10" for m in (10, 11, 12, 13)} | {20: "c20"}
    mem = {"c1": {1, 2, 3, 4}, "c10": {10, 11, 12, 13}, "c20": {20}}
    p = plan(cof, mem, [Placement(20, {1: 0.9, 2: 0.8, 3: 0.85, 10: 0.6})], 0.5)
    assert p.cluster_of[20] == "c1"
    assert all(p.cluster_of[m] == "c10" for m in (10, 11, 12, 13))


def test_bridge_to_most_of_another_cluster_merges_it_and_keeps_earliest_id() -> None:
    cof = {3: "c3", 4: "c3", 7: "c7", 8: "c7", 9: "c9"}
    mem = {"c3": {3, 4}, "c7": {7, 8}, "c9": {9}}
    p = plan(cof, mem, [Placement(9, {7: 0.9, 8: 0.9, 3: 0.7, 4: 0.8})], 0.5)
    assert {p.cluster_of[m] for m in (3, 4, 7, 8, 9)} == {"c3"}
    assert p.merged_into == {"c7": "c3", "c9": "c3"}


def test_no_edges_leaves_everything_alone() -> None:
    p = plan({1: "c1"}, {"c1": {1}}, [Placement(1, {})], 0.5)
    assert p.members == {} and p.cluster_of == {1: "c1"}


def test_detached_article_needs_a_fresh_id_when_its_own_still_names_the_old_cluster() -> None:
    p = plan({1: "c1", 2: "c1"}, {"c1": {1, 2}}, [Placement(1, {}, detach=True, fresh_id="c50")], 0.5)
    assert p.cluster_of[1] == "c50" and p.members["c1"] == {2}
