"""Named regions of MediaPipe's 478-point face mesh, built from the mesh's own connection sets.

``FACEMESH_LIPS`` holds two closed loops of edges; the inner one borders the mouth opening, a hole of the mesh,
so each of its edges lies on one triangle of ``FACEMESH_TESSELATION`` where an edge of the outer loop lies on
two. Eyes are holes too (their loops are ordered the same way). Only two indices are taken from MediaPipe's
documentation rather than the connection sets: 13 and 14, the middle of the upper and lower inner lip, which
fix where the mouth-opening pairs start.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
IRIS_POINTS = 10  # refine_landmarks adds 5 points per iris after the 468 mesh points


def _neighbours(edges: Iterable[tuple[int, int]]) -> dict[int, set[int]]:
    graph: dict[int, set[int]] = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
        graph[b].add(a)
    return graph


def loops(edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """The closed loops of an edge set in which every point has two neighbours, each ordered along the loop."""
    graph = _neighbours(edges)
    if any(len(n) != 2 for n in graph.values()):
        raise ValueError("the edges do not form closed loops (a point without exactly two neighbours)")
    seen: set[int] = set()
    found = []
    for start in sorted(graph):
        if start in seen:
            continue
        loop, previous = [start], None
        seen.add(start)
        while True:
            step = [n for n in sorted(graph[loop[-1]]) if n != previous and n not in seen]
            if not step:
                break
            previous = loop[-1]
            loop.append(step[0])
            seen.add(step[0])
        found.append(loop)
    return found


def _triangles_per_edge(loop: list[int], mesh: dict[int, set[int]]) -> float:
    """Mean number of mesh triangles on the loop's edges (1 where the loop borders a hole, 2 inside the mesh)."""
    return float(np.mean([len(mesh[a] & mesh[b]) for a, b in zip(loop, loop[1:] + loop[:1], strict=True)]))


def _points(edges: Iterable[tuple[int, int]]) -> np.ndarray:
    return np.array(sorted({p for edge in edges for p in edge}), np.int64)


def _mouth_opening(inner: list[int]) -> np.ndarray:
    """(K, 2) pairs (upper, lower) of inner-lip points facing each other across the mouth, middle pair first: the
    inner loop walked from the upper middle one way and from the lower middle the other way."""
    n = len(inner)
    top, bottom = inner.index(UPPER_INNER_LIP), inner.index(LOWER_INNER_LIP)
    if (bottom - top) % n != n // 2:
        raise ValueError(f"inner-lip points {UPPER_INNER_LIP} and {LOWER_INNER_LIP} are not opposite on the loop")
    quarter = n // 4  # points before the corner on each side
    pairs = [(inner[(top + s * k) % n], inner[(bottom - s * k) % n]) for k in range(quarter) for s in (1, -1)][1:]
    return np.array(pairs, np.int64)


@functools.cache
def face_mesh_regions() -> dict[str, np.ndarray]:
    """Index arrays of the refined face mesh: ``lips_outer``, ``lips_inner``, ``left_eye``, ``right_eye`` (ordered
    closed contours; left/right are the subject's own), ``left_iris``, ``right_iris``, ``left_eyebrow``,
    ``right_eyebrow``, ``nose``, ``face_oval`` (ordered) and ``mouth_opening`` ((K, 2) upper/lower pairs)."""
    from mediapipe.python.solutions import face_mesh_connections as mesh

    tessellation = _neighbours(mesh.FACEMESH_TESSELATION)
    inner, outer = sorted(loops(mesh.FACEMESH_LIPS), key=lambda loop: _triangles_per_edge(loop, tessellation))
    regions = {"lips_outer": outer, "lips_inner": inner,
               "left_eye": loops(mesh.FACEMESH_LEFT_EYE)[0], "right_eye": loops(mesh.FACEMESH_RIGHT_EYE)[0],
               "face_oval": loops(mesh.FACEMESH_FACE_OVAL)[0]}
    regions = {name: np.array(loop, np.int64) for name, loop in regions.items()}
    for name in ("left_iris", "right_iris", "left_eyebrow", "right_eyebrow", "nose"):
        regions[name] = _points(getattr(mesh, f"FACEMESH_{name.upper()}"))
    regions["mouth_opening"] = _mouth_opening(inner)
    return regions
