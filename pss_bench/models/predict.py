"""Run a trained checkpoint of any registered model over a dataset split into a prediction directory."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from pss_bench.errors import PssBenchError
from pss_bench.models.registry import get_model


@torch.no_grad()
def predict_panoptic(net, image: torch.Tensor, categories: Sequence, cfg):
    """Panoptic prediction of one ``(3, H, W)`` image by the registered model ``cfg.model.arch``.

    Returns:
        ``(ids, segments_info, features, segment_embeddings)``: ``(H, W)`` int64
        segment ids (0 = VOID); ``{"id", "category_id", "iscrowd", "area",
        "score"}`` dicts; the dense ``(D, h, w)`` features the Context Error
        pools (PSS: the embeddings; UPSNet-style: ``upsnet.embedding``, by
        default the semantic head's ``fcn_feat``);
        and ``(N, D)`` embeddings of the predicted segments ``1..N``, or
        ``None`` for a model that has none (then they are pooled from the features).
    """
    return get_model(cfg.model.arch).predict(net, image, categories, cfg)


def pooled_embeddings(features: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-length mean of bilinearly upsampled ``(D, h, w)`` features over every non-zero id of ``(H, W)`` ``ids``.

    The pooling of :func:`pss_bench.metrics.context_error.pool_features`
    (the one ``pss-bench embed`` uses), normalised.

    Returns:
        ``(segment_ids (N,) int64 sorted, embeddings (N, D) float32)``.
    """
    import numpy as np

    from pss_bench.metrics.context_error import pool_features, segment_index_map

    ids_np = ids.cpu().numpy().astype(np.int64)
    seg_ids = np.unique(ids_np)
    seg_ids = seg_ids[seg_ids != 0]
    means, _ = pool_features(features.float().cpu().numpy(), segment_index_map(ids_np, seg_ids), len(seg_ids))
    norm = np.linalg.norm(means.astype(np.float64), axis=1, keepdims=True)
    emb = (means / np.maximum(norm, 1e-12)).astype(np.float32)
    return torch.from_numpy(seg_ids), torch.from_numpy(emb)


def write_predictions(
    checkpoint: str | os.PathLike,
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    split: str = "val",
    device: str = "cpu",
    dataset: str | None = None,
    embed_mode: str = "gt-segments",
    max_images: int = 0,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    progress: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> int:
    """Predicts ``data_root``'s ``split`` with ``checkpoint`` into the prediction directory ``out_dir``.

    Args:
        embed_mode: ``gt-segments`` (mean embedding over each GT segment, the
            paper's Table 1), ``pred-segments`` or ``none``.
        overrides: ``section.key=value`` settings applied to the checkpoint's
            config before predicting: meant for inference settings (the
            registered models' ``inference_sections`` and ``inference_keys``,
            which ``pss-bench predict`` checks), e.g. ``inference.KEY=VALUE``
            (PSS) or ``upsnet.embedding=fpn`` (the UPSNet-style baseline).
        workers: on a CPU, frames are predicted in this many forked processes
            (Linux) with one torch thread each, and written in order: the
            output is the same as with one. One thread per frame uses the
            cores without torch's intra-op synchronisation, which on a
            machine shared with other jobs cost up to 20 times the CPU time
            of a frame (``docs/benchmarks.md``, demo speed). Call it from a
            process with no other thread running (see
            :func:`pss_bench.threads.map_forked`).

    Returns:
        The number of images written.

    Raises:
        PssBenchError: no CUDA, unreadable checkpoint, a model that outputs
            NaN or infinite values, or a dataset whose categories differ from
            the checkpoint's.
    """
    from pss_bench.io.prediction import PredictionWriter
    from pss_bench.models.checkpoint import load_checkpoint
    from pss_bench.models.config import with_overrides
    from pss_bench.models.data import build_dataset

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise PssBenchError("--device cuda: CUDA is not available on this machine")
    net, cfg, categories, _ = load_checkpoint(checkpoint, device=device)
    if overrides:
        cfg = with_overrides(cfg, overrides)
    ds, ds_cats = build_dataset(dataset or cfg.data.dataset, data_root, split)
    if [c.id for c in ds_cats] != [c.id for c in categories]:
        raise PssBenchError(f"{data_root}: the dataset's categories differ from the checkpoint's ({checkpoint})")
    dev = torch.device(device)
    n = len(ds) if max_images == 0 else min(max_images, len(ds))
    extra = {"checkpoint": str(checkpoint), "config": cfg.name, "split": split}
    if overrides:  # what makes this directory differ from the checkpoint's defaults (e.g. upsnet.embedding=fpn)
        extra["overrides"] = [str(o) for o in overrides]
    if getattr(ds, "gt_json", None) is not None:
        extra["gt_json"] = str(Path(ds.gt_json).resolve())
    model_name = get_model(cfg.model.arch).display_name

    def one(i: int) -> tuple:
        """Image ``i``: ``(image_id, ids (H, W) int64, segments_info, embedded ids, embeddings)`` as numpy."""
        item = ds[i]
        ids, info, emb, seg_emb = predict_panoptic(net, item["image"].to(dev), categories, cfg)
        image_id = item["image_id"]
        if not bool(torch.isfinite(emb).all()) or (seg_emb is not None and not bool(torch.isfinite(seg_emb).all())):
            raise PssBenchError(
                f"{checkpoint}: the model outputs NaN or infinite values (first on image {image_id!r}): "
                "its weights are corrupted or diverged"
            )
        seg_ids = e = None
        if embed_mode == "gt-segments":
            seg_ids, e = pooled_embeddings(emb, item["panoptic"])
        elif embed_mode == "pred-segments" and seg_emb is None:
            seg_ids, e = pooled_embeddings(emb, ids)
        elif embed_mode == "pred-segments":
            present = [s["id"] for s in info]
            e = seg_emb[torch.tensor(present, dtype=torch.long, device=dev) - 1] if present else seg_emb[:0]
            seg_ids = torch.tensor(present, dtype=torch.long)
        return (image_id, ids.cpu().numpy().astype("int64"), info,
                None if seg_ids is None else seg_ids.cpu().numpy(), None if e is None else e.cpu().numpy())

    with PredictionWriter(out_dir, model=model_name, overwrite=overwrite, **extra) as writer:
        if embed_mode != "none":
            writer.manifest["embeddings"] = embed_mode
        for done, (image_id, ids, info, seg_ids, e) in enumerate(_in_order(one, n, workers, dev), 1):
            writer.add_panoptic(image_id, f"{image_id}.png", ids, info)
            if seg_ids is not None:
                writer.add_embeddings(image_id, seg_ids, e)
            if progress is not None:
                progress(done, n)
        writer.commit(categories=[{"id": c.id, "name": c.name, "isthing": int(c.isthing)} for c in categories])
    return n


def _in_order(one: Callable[[int], tuple], n: int, workers: int, dev: torch.device):
    """``one(0), ..., one(n - 1)`` in order: here, or in forked single-threaded workers on a CPU."""
    from pss_bench.threads import fork_available, map_forked

    if workers <= 1 or n <= 1 or dev.type != "cpu" or not fork_available():
        for i in range(n):
            yield one(i)
        return

    def single_threaded(i: int) -> tuple:
        if torch.get_num_threads() != 1:  # in the forked worker only: this process keeps its setting
            torch.set_num_threads(1)
        return one(i)

    pending: dict[int, tuple] = {}
    nxt = 0
    for i, result in map_forked(single_threaded, range(n), workers):
        pending[i] = result
        while nxt in pending:  # written in image order whatever order the workers finish in
            yield pending.pop(nxt)
            nxt += 1
