"""Panoptic quality as a ``torchmetrics.Metric``, with panopticapi's numbers.

Install with ``pip install pss-bench[torchmetrics]``. The input convention is
torchmetrics' own ``PanopticQuality``: ``preds`` and ``target`` of shape
``(B, *spatial, 2)`` holding ``(category_id, instance_id)`` per pixel, and the
``things`` / ``stuffs`` category sets. What differs is the result:
:meth:`PanopticQuality.compute` returns the numbers of panopticapi (and of
``pss-bench pq``), crowd regions included; ``docs/integrations/torchmetrics.md``
shows a batch where torchmetrics' metric gives another value.

Per image, the segments and the pixel histogram are computed on the tensors'
device (:mod:`pss_bench.metrics.pq_torch`); only the small confusion matrix
goes to the host. The states are per-class sums with ``dist_reduce_fx="sum"``,
so DDP and ``forward`` work as for any torchmetrics metric.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Collection

import numpy as np
import torch

try:
    from torchmetrics import Metric
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "pss_bench.integrations.torchmetrics needs torchmetrics: pip install 'pss-bench[torchmetrics]'"
    ) from exc

from pss_bench.errors import GroundTruthFormatError, PredictionFormatError, PssBenchError
from pss_bench.metrics.pq import PQResult, PQStats
from pss_bench.metrics.boundary import DEFAULT_DILATION_RATIO, dilation_pixels
from pss_bench.metrics.pq import match_image
from pss_bench.metrics.pq_torch import image_segments_torch
from pss_bench.metrics.variants import (
    VariantSettings,
    VariantStats,
    boundary_confusion,
    image_variant_stats,
    parse_metrics,
)
from pss_bench.structures import Category

__all__ = ["PanopticQuality", "RESULT_KEYS", "VARIANT_KEYS"]

#: Keys of :meth:`PanopticQuality.compute`, always all present.
RESULT_KEYS = ("pq", "sq", "rq", "pq_things", "sq_things", "rq_things", "pq_stuff", "sq_stuff", "rq_stuff")
#: Keys :meth:`PanopticQuality.compute` adds for each metric asked with ``metrics=``.
VARIANT_KEYS = {
    "boundary-pq": ("boundary_pq", "boundary_pq_things", "boundary_pq_stuff"),
    "pq-dagger": ("pq_dagger", "pq_dagger_things", "pq_dagger_stuff"),
    "pc": ("pc",),
    "pq-area": ("pq_small", "pq_medium", "pq_large"),
}

_MAX_INSTANCE = (1 << 32) - 1
_MAX_LUT = 1 << 20  # category ids below this map through a lookup table


def _category_set(values: Collection[int], name: str) -> list[int]:
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"`{name}` must hold integer category ids, found {v!r}")
        out.append(int(v))
    return sorted(set(out))


class PanopticQuality(Metric):
    """Panoptic quality (PQ, SQ, RQ) with panopticapi's rules, as a torchmetrics metric.

    Rules, as panopticapi (``docs/pq.md``): a pixel whose category is neither
    a thing nor a stuff is VOID; a match needs IoU > 0.5, with the
    prediction's pixels on GT VOID left out of the union (predicted VOID
    pixels on a GT segment stay in it); every unmatched non-crowd GT segment
    is a false negative; an unmatched prediction is a false positive unless
    more than half of it lies on GT VOID plus the GT crowd region of its
    category. As in torchmetrics, a stuff category is one segment per image
    (its instance ids are ignored) and images of a batch are never matched
    with each other.

    Example::

        metric = PanopticQuality(things={0, 1}, stuffs={6, 7})
        metric.update(preds, target)        # (B, H, W, 2) int tensors
        metric.compute()["pq"]              # tensor(0.5463, dtype=torch.float64)

    Args:
        things: category ids of countable things.
        stuffs: category ids of amorphous stuff.
        allow_unknown_preds_category: map predicted categories that are
            neither things nor stuffs to VOID instead of raising.
        crowd_instance_id: in ``target``, thing pixels with this instance id
            form the crowd region of their category (``iscrowd=1`` in COCO;
            ``0`` for Cityscapes / deeplab2-style labels). ``None`` (default):
            no crowd.
        metrics: further metrics of :data:`~pss_bench.metrics.variants.METRIC_NAMES`
            (``"boundary-pq,pq-dagger"``, ``"all"``): :meth:`compute` adds
            their keys (:data:`VARIANT_KEYS`), :meth:`compute_result` their
            full results. Boundary PQ needs ``(B, H, W, 2)`` images.
        dilation_ratio: Boundary PQ's ratio of the image diagonal.
        pc_normalize: Parsing Covering's ``normalize_by_image_size``.
        **kwargs: passed to :class:`torchmetrics.Metric` (``dist_sync_on_step``,
            ``process_group``, ...).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    plot_lower_bound = 0.0
    plot_upper_bound = 1.0

    iou: torch.Tensor
    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor

    def __init__(
        self,
        things: Collection[int],
        stuffs: Collection[int],
        *,
        allow_unknown_preds_category: bool = False,
        crowd_instance_id: int | None = None,
        metrics: str | Collection[str] | None = None,
        dilation_ratio: float = DEFAULT_DILATION_RATIO,
        pc_normalize: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        settings = VariantSettings(parse_metrics(metrics), dilation_ratio, pc_normalize)
        self.settings = settings if settings.any else None
        thing_ids, stuff_ids = _category_set(things, "things"), _category_set(stuffs, "stuffs")
        if set(thing_ids) & set(stuff_ids):
            raise ValueError(f"`things` and `stuffs` share categories {sorted(set(thing_ids) & set(stuff_ids))}")
        if not thing_ids and not stuff_ids:
            raise ValueError("at least one of `things` and `stuffs` must be non-empty")
        if crowd_instance_id is not None and not 0 <= int(crowd_instance_id) <= _MAX_INSTANCE:
            raise ValueError(f"crowd_instance_id must lie in [0, 2**32), found {crowd_instance_id}")
        self.categories: tuple[Category, ...] = tuple(
            [Category(c, str(c), True) for c in thing_ids] + [Category(c, str(c), False) for c in stuff_ids]
        )
        self.allow_unknown_preds_category = bool(allow_unknown_preds_category)
        self.crowd_instance_id = None if crowd_instance_id is None else int(crowd_instance_id)
        self._is_thing = np.array([c.isthing for c in self.categories], dtype=bool)
        ids = np.array([c.id for c in self.categories], dtype=np.int64)
        order = np.argsort(ids, kind="stable")
        self._sorted_ids = torch.from_numpy(ids[order])
        self._sorted_to_index = torch.from_numpy(order.astype(np.int64))
        self._is_thing_t = torch.from_numpy(self._is_thing)
        self._lookup_cache: dict = {}
        n = len(self.categories)
        self.add_state("iou", default=torch.zeros(n, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("tp", default=torch.zeros(n, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("fp", default=torch.zeros(n, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("fn", default=torch.zeros(n, dtype=torch.int64), dist_reduce_fx="sum")
        if self.settings is not None:
            rows = VariantStats.zeros(self.categories, self.settings).to_array().shape[0]
            self.add_state("variant", default=torch.zeros(rows, n, dtype=torch.float64), dist_reduce_fx="sum")

    # ------------------------------------------------------------------ update

    def _lookups(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        found = self._lookup_cache.get(device)
        if found is None:
            found = (self._sorted_ids.to(device), self._sorted_to_index.to(device), self._is_thing_t.to(device))
            self._lookup_cache[device] = found
        return found

    def _category_luts(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Lookup tables ``id + 1 -> category index`` (-1: unknown) and ``-> keeps instance`` (things)."""
        key = ("lut", device)
        found = self._lookup_cache.get(key)
        if found is None:
            sorted_ids, to_index, is_thing = self._lookups(device)
            lo, hi = int(sorted_ids[0]), int(sorted_ids[-1])
            if lo < 0 or hi >= _MAX_LUT:
                return None
            index = torch.full((hi + 3,), -1, dtype=torch.int64, device=device)
            index[sorted_ids + 1] = to_index
            thing = torch.zeros(hi + 3, dtype=torch.int64, device=device)
            thing[sorted_ids + 1] = is_thing[to_index].to(torch.int64)
            found = self._lookup_cache[key] = (index, thing)
        return found

    def _pairs(self, x: torch.Tensor, role: str, image: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,)`` int64 category indices (-1 = VOID) and instance ids (0 on VOID and stuff) of one image."""
        cat = x[..., 0].reshape(-1).to(torch.int64).contiguous()
        inst = x[..., 1].reshape(-1).to(torch.int64)
        luts = self._category_luts(cat.device)
        if luts is not None:  # two gathers instead of a binary search per pixel
            pos = cat.clamp(min=-1, max=luts[0].numel() - 2).add_(1)
            index, keep = luts[0][pos], luts[1][pos]
        else:
            sorted_ids, to_index, is_thing = self._lookups(cat.device)
            pos = torch.searchsorted(sorted_ids, cat).clamp_(max=sorted_ids.numel() - 1)
            index = torch.where(sorted_ids[pos] == cat, to_index[pos], -1)
            keep = (index >= 0) & is_thing[index.clamp(min=0)]
        if role == "preds" and not self.allow_unknown_preds_category and bool((index < 0).any()):
            bad = torch.unique(cat[index < 0])[:10].tolist()
            raise PredictionFormatError(
                f"preds[{image}]: category ids {bad} are neither things nor stuffs "
                "(allow_unknown_preds_category=True maps them to VOID)"
            )
        # As torchmetrics: a stuff category is one segment, whatever its instance ids.
        inst = inst * keep
        if inst.numel():
            lo, hi = torch.aminmax(inst)
            if int(lo) < 0 or int(hi) > _MAX_INSTANCE:
                error = PredictionFormatError if role == "preds" else GroundTruthFormatError
                raise error(f"{role}[{image}]: instance ids must lie in [0, 2**32), found {int(lo)}..{int(hi)}")
        return index, inst

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        """Adds a batch of images.

        Args:
            preds: ``(B, *spatial, 2)`` integer tensor of ``(category_id,
                instance_id)`` per pixel.
            target: the ground truth, same shape and device.

        Raises:
            TypeError: not integer tensors.
            PssBenchError: shapes differ or are not ``(B, *spatial, 2)``.
            PredictionFormatError: unknown predicted categories (unless
                allowed) or instance ids outside ``[0, 2**32)``.
            GroundTruthFormatError: GT instance ids outside ``[0, 2**32)``.
        """
        for name, t in (("preds", preds), ("target", target)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"`{name}` must be a torch.Tensor, found {type(t).__name__}")
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"`{name}` must hold integer ids, found {t.dtype}")
        if preds.shape != target.shape:
            raise PssBenchError(f"preds shape {tuple(preds.shape)} differs from target shape {tuple(target.shape)}")
        if preds.dim() < 3 or preds.shape[-1] != 2:
            raise PssBenchError(
                f"expected (B, *spatial, 2) tensors of (category_id, instance_id), found shape {tuple(preds.shape)}"
            )
        if preds.dim() == 3:  # read as a batch, (H, W, 2) would be H one-row images: a silently wrong PQ
            raise PssBenchError(
                f"expected (B, *spatial, 2) tensors with at least two spatial axes, found shape {tuple(preds.shape)}: "
                f"for one (H, W, 2) image pass preds[None], target[None]"
            )
        target = target.to(preds.device)
        iou = np.zeros(len(self.categories))
        tp = np.zeros(len(self.categories), np.int64)
        fp = np.zeros_like(tp)
        fn = np.zeros_like(tp)
        boundary = self.settings is not None and self.settings.wants("boundary-pq")
        if boundary and preds.dim() != 4:
            raise PssBenchError(f"boundary-pq needs (B, H, W, 2) images, found shape {tuple(preds.shape)}")
        extra = VariantStats.zeros(self.categories, self.settings) if self.settings is not None else None
        for b in range(preds.shape[0]):
            conf, gt, pred, gidx, pidx = image_segments_torch(
                *self._pairs(target[b], "target", b), *self._pairs(preds[b], "preds", b),
                self._is_thing, crowd_instance=self.crowd_instance_id,
            )
            stats = match_image(conf, gt, pred, len(self.categories))
            if extra is not None:
                bconf = None
                if boundary:
                    h, w = int(preds.shape[1]), int(preds.shape[2])
                    d = dilation_pixels(h, w, self.settings.dilation_ratio)
                    bconf = boundary_confusion(gidx.reshape(h, w).cpu().numpy(), pidx.reshape(h, w).cpu().numpy(),
                                               conf.shape[0] - 1, conf.shape[1] - 1, d)
                extra += image_variant_stats(self.settings, self.categories, conf, gt, pred, boundary_conf=bconf)
            iou += stats[0]
            tp += stats[1]
            fp += stats[2]
            fn += stats[3]
        device = self.iou.device
        self.iou += torch.from_numpy(iou).to(device)
        self.tp += torch.from_numpy(tp).to(device)
        self.fp += torch.from_numpy(fp).to(device)
        self.fn += torch.from_numpy(fn).to(device)
        if extra is not None:
            self.variant += torch.from_numpy(extra.to_array()).to(device)

    # ------------------------------------------------------------------ results

    def _stats(self) -> PQStats:
        return PQStats(
            self.categories,
            self.iou.detach().cpu().numpy().astype(np.float64),
            self.tp.detach().cpu().numpy().astype(np.int64),
            self.fp.detach().cpu().numpy().astype(np.int64),
            self.fn.detach().cpu().numpy().astype(np.int64),
        )

    def _result(self) -> PQResult:
        result = self._stats().compute()
        if self.settings is not None:
            v = VariantStats.from_array(self.categories, self.settings, self.variant.detach().cpu().numpy())
            result = dataclasses.replace(result, variants=v.compute())
        return result

    def compute(self) -> dict[str, torch.Tensor]:
        """PQ, SQ, RQ of All / things / stuff as float64 scalar tensors (fractions).

        Returns:
            A dict with the keys of :data:`RESULT_KEYS` (and, with ``metrics=``,
            those of :data:`VARIANT_KEYS` for the metrics asked), ready for
            ``LightningModule.log_dict``; a row without any class (e.g. no
            stuff seen yet) is NaN.
        """
        result = self._result()
        values: dict[str, float | None] = {}
        for suffix, row in (("", result.all), ("_things", result.things), ("_stuff", result.stuff)):
            for m in ("pq", "sq", "rq"):
                values[f"{m}{suffix}"] = None if row is None else getattr(row, m)
        v = result.variants
        if v is not None:
            for key, res in (("boundary_pq", v.boundary_pq and v.boundary_pq.pq), ("pq_dagger", v.pq_dagger)):
                if res:
                    for suffix, row in (("", res.all), ("_things", res.things), ("_stuff", res.stuff)):
                        values[f"{key}{suffix}"] = None if row is None else row.pq
            if v.pc is not None:
                values["pc"] = v.pc.pc
            if v.pq_area is not None:
                for name, r in v.pq_area.by_name().items():
                    values[f"pq_{name}"] = None if r.all is None else r.all.pq
        return {k: torch.tensor(float("nan") if x is None else x, dtype=torch.float64, device=self.iou.device)
                for k, x in values.items()}

    def compute_per_class(self) -> dict[str, torch.Tensor]:
        """Per-class PQ, SQ, RQ, like torchmetrics' ``return_per_class`` but a fixed shape.

        Returns:
            ``{"category_id": (C,) int64, "pq", "sq", "rq": (C,) float64}``
            for every category, things then stuffs, each in ascending id
            order (:attr:`categories`); NaN for a class with no GT or
            predicted segment yet (it counts in no mean). :meth:`compute`
            keeps its scalar keys, so ``log_dict(metric.compute())`` works.
        """
        result = self._stats().compute()
        out: dict[str, torch.Tensor] = {
            "category_id": torch.tensor([c.id for c in self.categories], dtype=torch.int64, device=self.iou.device)}
        for m in ("pq", "sq", "rq"):
            values = [getattr(r, m) if r.present else float("nan")
                      for r in (result.per_class[c.id] for c in self.categories)]
            out[m] = torch.tensor(values, dtype=torch.float64, device=self.iou.device)
        return out

    def compute_result(self) -> PQResult:
        """The full :class:`~pss_bench.metrics.pq.PQResult` (per-class counts, ``variants``), after syncing ranks."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=self._should_unsync):
            return self._result()
