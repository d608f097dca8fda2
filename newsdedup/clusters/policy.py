"""Which cluster an article joins, and when clusters fuse: a pure function.

An article with verified duplicates joins the cluster it has the most (then the
strongest) edges to. Another cluster is fused in only when the article is a
direct duplicate of at least ``merge_ratio`` of its members: one weak edge
into a large cluster never glues two stories together (chaining), while a copy
that bridges two small halves of the same story still unites them.

Cluster ids are ``c<n>`` with ``n`` the article number that founded the
cluster; when clusters fuse the smallest number wins, so ids are stable and a
cluster keeps the id of its earliest article.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from newsdedup.keys import cluster_id, cluster_number


@dataclass
class Placement:
    """The article being placed, its verified duplicates (number -> score), and whether to detach it first."""

    n: int
    edges: dict[int, float]
    detach: bool = False
    fresh_id: str | None = None  # id for a detached article whose own c<n> still names its old cluster


@dataclass
class Plan:
    cluster_of: dict[int, str]  # every involved article's cluster after the plan
    members: dict[str, set[int]]  # members of every cluster touched (empty set: cluster is gone)
    merged_into: dict[str, str] = field(default_factory=dict)  # removed cluster -> the cluster it became
    changed: set[int] = field(default_factory=set)  # articles whose cluster changed


def _num(cid: str) -> int:
    v = cluster_number(cid)
    return v if v is not None else 1 << 62


def plan(cluster_of: dict[int, str], members: dict[str, set[int]], placements: list[Placement],
         merge_ratio: float) -> Plan:
    """Place articles one after another on a private copy of the given snapshot."""
    cof = dict(cluster_of)
    mem = {c: set(m) for c, m in members.items()}
    merged: dict[str, str] = {}
    changed: set[int] = set()
    for p in placements:
        x = p.n
        own = cof.get(x)
        if own is None or p.detach:
            if own is not None:
                mem.setdefault(own, set()).discard(x)
            own = cluster_id(x)
            if mem.get(own) or any(c == own for m, c in cof.items() if m != x):
                if p.fresh_id is None:
                    raise ValueError(f"article {x} must leave cluster {own}; give it a fresh_id")
                own = p.fresh_id
            mem[own] = {x}
            cof[x] = own
            changed.add(x)
        by_cluster: dict[str, list[float]] = {}
        for m, score in p.edges.items():
            c = cof.get(m)
            if c is None or m == x:
                continue
            by_cluster.setdefault(c, []).append(score)
        by_cluster.pop(own, None)
        if not by_cluster:
            continue
        group = [own]
        own_size = len(mem.get(own, ()))
        ranked = sorted(by_cluster, key=lambda c: (-len(by_cluster[c]), -max(by_cluster[c]), _num(c)))
        for rank, c in enumerate(ranked):
            size = len(mem.get(c, ())) or 1
            links = len(by_cluster[c])
            if rank == 0 and own_size == 1:
                group.append(c)  # a lone article joins its best cluster on any verified edge
            elif links >= merge_ratio * size:
                group.append(c)  # x duplicates enough of c that c is the same story
        if len(group) == 1:
            continue
        target = min(group, key=_num)
        for c in group:
            if c == target:
                continue
            for m in mem.get(c, set()):
                cof[m] = target
                changed.add(m)
            mem.setdefault(target, set()).update(mem.get(c, set()))
            mem[c] = set()
            merged[c] = target
            for old, new in list(merged.items()):
                if new == c:
                    merged[old] = target
    touched = {c for c in mem if c not in members or mem[c] != members[c]}
    return Plan(cluster_of=cof, members={c: mem[c] for c in touched}, merged_into=merged, changed=changed)
