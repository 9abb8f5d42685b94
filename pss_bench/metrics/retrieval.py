"""Nearest-neighbour retrieval of embeddings (faiss, exact inner product): arrays in, indices out.

Pure compute: no files, no instance sets (those are
:mod:`pss_bench.evaluation.context_error`'s). faiss is imported when called.
"""

from __future__ import annotations

import numpy as np


def search(queries: np.ndarray, gallery: np.ndarray, k: int, self_index: np.ndarray | None) -> np.ndarray:
    """Exact cosine retrieval with faiss.

    Args:
        queries: ``(n_q, D)`` float32 L2-normalised.
        gallery: ``(n_g, D)`` float32 L2-normalised.
        k: neighbours wanted.
        self_index: ``(n_q,)`` each query's own gallery row (removed from its
            results), or ``None``.

    Returns:
        ``(n_q, K_eff)`` int64 gallery rows, most similar first, with
        ``K_eff = min(k, n_g - (1 if self_index is not None else 0))``.
    """
    import faiss

    nq, ng = queries.shape[0], gallery.shape[0]
    k_eff = max(0, min(k, ng - (1 if self_index is not None else 0)))
    if nq == 0 or k_eff == 0:
        return np.zeros((nq, 0), np.int64)
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(np.ascontiguousarray(gallery, dtype=np.float32))
    kk = min(ng, k_eff + (1 if self_index is not None else 0))
    _, found = index.search(np.ascontiguousarray(queries, dtype=np.float32), kk)
    found = found.astype(np.int64)
    if self_index is None:
        return found[:, :k_eff]
    drop = found == self_index[:, None]
    # Ties can push the query itself out of its own top list: then drop the last.
    no_self = ~drop.any(axis=1)
    drop[no_self, -1] = True
    return found[~drop].reshape(nq, kk - 1)[:, :k_eff]
