"""PQ and Context Error of several prediction directories against one ground truth.

The engine behind ``pss-bench compare`` (the paper's Tables 1 and 2 for any
set of models). It only calls the existing evaluators:
:func:`~pss_bench.evaluation.pq.evaluate_pq` for PQ, and
:func:`~pss_bench.evaluation.instances.load_instances` +
:func:`~pss_bench.evaluation.context_error.score_instances` (what
``evaluate_context_error`` does, keeping the instance set for the report's
retrieval strips) for the Context Error.

GT work is shared through the evaluators' on-disk caches: the first model
decodes every GT PNG once for PQ (``GTCache``) and once for its context
descriptors (``DescriptorCache``); every later model reads both caches. With
``use_cache=False`` a temporary cache folder lives for the duration of
:func:`compare_models`, so the GT is still decoded only once per metric.

What it must not do: print, write anything but cache entries, or compute a
metric itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from pss_bench.errors import PredictionFormatError
from pss_bench.evaluation.context_error import CategoryRetrieval, retrieve, score_instances
from pss_bench.evaluation.instances import InstanceSet, load_instances
from pss_bench.io.embeddings import read_manifest
from pss_bench.io.panoptic import read_json_file
from pss_bench.metrics.bootstrap import (
    BootstrapSettings,
    CEBootstrap,
    PQBootstrap,
    bootstrap_context_error,
    bootstrap_pq,
    bootstrap_variants,
    variant_bootstrap_dict,
)
from pss_bench.metrics.context_error import ContextErrorResult, PairTerms, pair_ce_rows
from pss_bench.metrics.pq import PQResult
from pss_bench.structures import Category

log = logging.getLogger(__name__)

#: Bounds of two models agree when they differ by less than this (they are
#: functions of the instance set only, computed in float64).
BOUNDS_ATOL = 1e-9


@dataclass(frozen=True)
class ModelComparison:
    """One model's results.

    Attributes:
        name: the display name.
        pred_dir: the prediction directory.
        pq: its PQ, or ``None`` when the directory holds no panoptic prediction.
        context_error: its Context Error, or ``None`` when it holds no
            embeddings pooled over GT segments.
        notes: why a metric is missing (one line each).
    """

    name: str
    pred_dir: Path
    pq: PQResult | None
    context_error: ContextErrorResult | None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "pred_dir": str(self.pred_dir),
            "pq": self.pq.to_dict() if self.pq is not None else None,
            "context_error": self.context_error.to_dict() if self.context_error is not None else None,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CEBounds:
    """The random and oracle Context Error bounds, shown once.

    They depend on the instance set and K only, not on the embeddings, so
    they are the same for every model that embeds the same GT instances.

    Attributes:
        source: the name of the model they were taken from (the first with a CE).
        per_class: category id -> ``(random, oracle)`` (``None`` without queries).
        mean: ``(random, oracle)`` means over classes with queries.
        consistent: whether every model with a CE has the same bounds (within
            :data:`BOUNDS_ATOL`); ``False`` when they embed different instances.
    """

    source: str
    per_class: dict[int, tuple[float | None, float | None]]
    mean: tuple[float | None, float | None]
    consistent: bool

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "consistent": self.consistent,
            "per_class": {str(c): {"random": r, "oracle": o} for c, (r, o) in self.per_class.items()},
            "mean": {"random": self.mean[0], "oracle": self.mean[1]},
        }


@dataclass(frozen=True)
class CompareBootstrap:
    """Confidence intervals and paired differences of every model.

    Attributes:
        settings: resamples, level, seed.
        pq: the PQ bootstrap of the models with a PQ (the first is the
            reference of its differences), or ``None``.
        pq_models: indices into :attr:`CompareResult.models` of those models.
        context_error: the Context Error bootstrap of the models with a CE.
        ce_models: their indices.
        variants: the further metrics' bootstraps (``--metrics``) over the
            models of ``pq_models``, keyed as
            :data:`~pss_bench.metrics.variants.BOOTSTRAP_KEYS`
            (:func:`~pss_bench.metrics.bootstrap.bootstrap_variants`); the JSON
            keeps each metric's meaningful fields only
            (:func:`~pss_bench.metrics.bootstrap.variant_bootstrap_dict`).
    """

    settings: BootstrapSettings
    pq: PQBootstrap | None
    pq_models: tuple[int, ...]
    context_error: CEBootstrap | None
    ce_models: tuple[int, ...]
    variants: dict[str, PQBootstrap] = field(default_factory=dict)

    def to_dict(self, names: Sequence[str]) -> dict:
        out = {
            **self.settings.to_dict(),
            "pq": {"names": [names[i] for i in self.pq_models], **self.pq.to_dict()} if self.pq else None,
            "context_error": ({"names": [names[i] for i in self.ce_models], **self.context_error.to_dict()}
                              if self.context_error else None),
        }
        if self.variants:
            out["variants"] = {key: {"names": [names[i] for i in self.pq_models], **variant_bootstrap_dict(key, b)}
                               for key, b in self.variants.items()}
        return out


@dataclass(frozen=True)
class CompareResult:
    """Every model's PQ and Context Error against one GT.

    Attributes:
        gt_json: the ground-truth JSON.
        k: the Context Error's K.
        categories: every GT category, in the JSON's order.
        models: one entry per prediction directory, in the order given.
        bounds: the CE bounds, or ``None`` when no model has a CE.
        reference: index of the model the relative mean CE refers to (the
            first model with a mean CE), or ``None``.
        all_classes: whether mean CEs average every class with queries (the
            paper's plain mean) rather than the informative ones only.
        bootstrap: confidence intervals and paired differences, or ``None``.
        instances: model name -> its :class:`InstanceSet` (only with
            ``keep_instances=True``; not part of :meth:`to_dict`).
        retrievals: model name -> category id -> the retrieval its Context
            Error was scored on (with ``instances``; the report draws them).
    """

    gt_json: Path
    k: int
    categories: tuple[Category, ...]
    models: tuple[ModelComparison, ...]
    bounds: CEBounds | None
    reference: int | None
    all_classes: bool = False
    bootstrap: CompareBootstrap | None = None
    instances: dict[str, InstanceSet] = field(default_factory=dict, repr=False, compare=False)
    retrievals: dict[str, dict[int, CategoryRetrieval]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def thing_categories(self) -> tuple[Category, ...]:
        return tuple(c for c in self.categories if c.isthing)

    def mean_classes(self, i: int) -> tuple[int, ...]:
        """The classes model ``i``'s mean CE averages (empty without a CE)."""
        ce = self.models[i].context_error
        if ce is None:
            return ()
        return tuple(cid for cid, r in ce.per_class.items() if r.queries and (self.all_classes or r.informative))

    def delta_classes(self, i: int) -> tuple[int, ...]:
        """The classes the Δ mean CE of model ``i`` averages: those in both its and the reference's mean."""
        if self.reference is None:
            return ()
        ref = set(self.mean_classes(self.reference))
        return tuple(c for c in self.mean_classes(i) if c in ref)

    def relative_mean_ce(self, i: int) -> float | None:
        """``(CE_i - CE_ref) / CE_ref`` of the mean CE (``-0.137`` is the paper's "-13.7%").

        Both means are taken over :meth:`delta_classes` only, the classes both
        models have: a class one model lacks would otherwise weigh in one
        mean and not in the other.
        """
        classes = self.delta_classes(i)
        if not classes:
            return None
        ce = self.models[i].context_error
        ref = self.models[self.reference].context_error
        a = float(np.mean([ce.per_class[c].ce for c in classes]))
        r = float(np.mean([ref.per_class[c].ce for c in classes]))
        if not r:
            return None
        return (a - r) / r

    def delta_note(self, i: int) -> str | None:
        """A sentence when model ``i``'s Δ leaves out classes that one of the two means has."""
        classes = set(self.delta_classes(i))
        if self.reference is None or i == self.reference or self.models[i].context_error is None:
            return None
        dropped = (set(self.mean_classes(i)) | set(self.mean_classes(self.reference))) - classes
        if not dropped:
            return None
        names = {c.id: c.name for c in self.categories}
        return (f"Δ mean CE of {self.models[i].name} is over the {len(classes)} "
                f"class{'es' if len(classes) != 1 else ''} both it and "
                f"{self.models[self.reference].name} have (without {', '.join(names[c] for c in sorted(dropped))})")

    def to_dict(self) -> dict:
        models = []
        names = [m.name for m in self.models]
        for i, m in enumerate(self.models):
            d = m.to_dict()
            d["relative_mean_ce"] = self.relative_mean_ce(i)
            d["delta_classes"] = list(self.delta_classes(i)) if m.context_error is not None else None
            models.append(d)
        return {
            "gt_json": str(self.gt_json),
            "k": self.k,
            "all_classes": self.all_classes,
            "reference": self.models[self.reference].name if self.reference is not None else None,
            "models": models,
            "bounds": self.bounds.to_dict() if self.bounds is not None else None,
            "bootstrap": self.bootstrap.to_dict(names) if self.bootstrap is not None else None,
        }


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Input:
    name: str
    pred_dir: Path
    has_panoptic: bool
    embeddings: str | None


def default_names(pred_dirs: Sequence[str | os.PathLike]) -> list[str]:
    """The directories' names, made unique with ``#2``, ``#3``... where they repeat."""
    out: list[str] = []
    for p in pred_dirs:
        p = Path(p)
        base = (p.resolve().stem if p.is_file() else p.resolve().name) or str(p)
        name, n = base, 1
        while name in out:
            n += 1
            name = f"{base}#{n}"
        out.append(name)
    return out


def _has_panoptic(pred_dir: Path) -> bool:
    """Whether ``panoptic.json`` (or the JSON ``pred_dir`` itself) lists at least one image (``embed`` writes an empty one)."""
    path = pred_dir if pred_dir.is_file() else pred_dir / "panoptic.json"
    if not os.path.lexists(path):  # present but a folder, FIFO or broken link: refused by the reader
        return False
    obj = read_json_file(path, PredictionFormatError)
    if not isinstance(obj, dict) or not isinstance(obj.get("annotations"), list):
        raise PredictionFormatError(f"{path}: expected a COCO panoptic object with an 'annotations' list")
    return bool(obj["annotations"])


def check_inputs(pred_dirs: Sequence[str | os.PathLike], names: Sequence[str] | None = None) -> list[_Input]:
    """Reads every manifest before any evaluation, so a bad directory fails fast.

    Each input is what ``pss-bench pq`` accepts, and more: a prediction
    directory (``manifest.json``), a folder with only ``panoptic.json`` +
    ``panoptic/`` (PQ only), or a COCO panoptic prediction JSON (PQ only).

    Raises:
        PredictionFormatError: a bad manifest, or a directory with neither a
            panoptic prediction nor embeddings.
        ValueError: names that do not match the directories or repeat.
    """
    if not pred_dirs:
        raise ValueError("need at least one prediction directory")
    names = list(names) if names is not None else default_names(pred_dirs)
    if len(names) != len(pred_dirs):
        raise ValueError(f"{len(names)} names for {len(pred_dirs)} prediction directories")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names}")
    out = []
    for name, p in zip(names, pred_dirs):
        p = Path(p)
        plain = p.is_file() or (not (p / "manifest.json").exists() and os.path.lexists(p / "panoptic.json"))
        manifest = {} if plain else read_manifest(p)  # no manifest: a panoptic prediction, as `pq` reads it
        has_pan = _has_panoptic(p)
        kind = manifest.get("embeddings")
        if not has_pan and kind is None:
            raise PredictionFormatError(
                f"{p / 'manifest.json'}: neither a panoptic prediction (panoptic.json lists no image) "
                f"nor embeddings (no 'embeddings' in the manifest): nothing to compare"
            )
        out.append(_Input(name, p, has_pan, kind))
    return out


@contextlib.contextmanager
def _shared_cache(cache_dir: str | os.PathLike | None, use_cache: bool) -> Iterator[Path | None]:
    if use_cache:
        yield Path(cache_dir) if cache_dir is not None else None
        return
    with tempfile.TemporaryDirectory(prefix="pss-bench-compare-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------- bounds


def _bounds_of(ce: ContextErrorResult) -> tuple[dict[int, tuple[float | None, float | None]], tuple]:
    return {cid: (r.random, r.oracle) for cid, r in ce.per_class.items()}, (ce.mean.random, ce.mean.oracle)


def _same(a: tuple, b: tuple) -> bool:
    for x, y in zip(a, b):
        if (x is None) != (y is None):
            return False
        if x is not None and abs(x - y) > BOUNDS_ATOL:
            return False
    return True


def ce_bounds(models: Sequence[ModelComparison]) -> CEBounds | None:
    """The bounds of the first model with a CE, and whether all models agree on them."""
    with_ce = [m for m in models if m.context_error is not None]
    if not with_ce:
        return None
    per_class, mean = _bounds_of(with_ce[0].context_error)
    consistent = True
    for m in with_ce[1:]:
        pc, mn = _bounds_of(m.context_error)
        if set(pc) != set(per_class) or not _same(mn, mean) or not all(_same(pc[c], per_class[c]) for c in pc):
            consistent = False
    return CEBounds(with_ce[0].name, per_class, mean, consistent)


# --------------------------------------------------------------------------- evaluation


def compare_models(
    pred_dirs: Sequence[str | os.PathLike],
    gt_json: str | os.PathLike,
    *,
    gt_dir: str | os.PathLike | None = None,
    names: Sequence[str] | None = None,
    k: int = 20,
    workers: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    keep_instances: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    all_classes: bool = False,
    bootstrap: BootstrapSettings | None = None,
    metrics: Sequence[str] | str | None = None,
    dilation_ratio: float = 0.02,
    pc_normalize: bool = True,
) -> CompareResult:
    """PQ and Context Error of each prediction directory.

    Args:
        pred_dirs: prediction directories (``manifest.json``, ``panoptic.json``
            + ``panoptic/`` and/or ``embeddings/``).
        gt_json, gt_dir: the ground truth (PNG folder default: the JSON path without ``.json``).
        names: display names (default: the directories' names).
        k: neighbours per Context Error query.
        workers: decoding threads.
        cache_dir: GT cache root (default: the user cache folder).
        use_cache: read and write the user's cache; when ``False`` a temporary
            cache still shares the GT decoding between models.
        keep_instances: keep each model's :class:`InstanceSet` in the result
            (for retrieval figures).
        progress: ``progress(stage, done, total)``; ``stage`` is e.g. ``"PQ model_a"``.
        all_classes: mean CEs over every class with queries (the paper's
            plain mean) instead of the informative classes only.
        bootstrap: when given, confidence intervals of every metric and
            paired differences to the first model
            (:func:`~pss_bench.metrics.bootstrap.bootstrap_pq`,
            :func:`~pss_bench.metrics.bootstrap.bootstrap_context_error`).
        metrics, dilation_ratio, pc_normalize: further metrics besides PQ
            (:func:`~pss_bench.evaluation.pq.evaluate_pq`); with ``bootstrap``
            each gets its intervals and paired differences too
            (``CompareBootstrap.variants``).

    Returns:
        A :class:`CompareResult`.

    Raises:
        GroundTruthFormatError | PredictionFormatError: the first bad input
            (manifests are all checked before any evaluation).
        ValueError: bad ``names`` or ``k``.
    """
    from pss_bench.evaluation.pq import evaluate_pq
    from pss_bench.io.panoptic import load_panoptic_json

    if k < 1:
        raise ValueError("k must be at least 1")
    inputs = check_inputs(pred_dirs, names)
    gt = load_panoptic_json(gt_json, gt_dir, role="gt")
    models: list[ModelComparison] = []
    instances: dict[str, InstanceSet] = {}
    retrievals: dict[str, dict[int, CategoryRetrieval]] = {}

    def stage_progress(stage: str):
        if progress is None:
            return None
        return lambda done, total: progress(stage, done, total)

    with _shared_cache(cache_dir, use_cache) as cache:
        for inp in inputs:
            notes: list[str] = []
            pq = None
            if inp.has_panoptic:
                log.info("PQ of %s (%s)", inp.name, inp.pred_dir)
                pq = evaluate_pq(inp.pred_dir, gt, workers=workers, cache_dir=cache,
                                 use_cache=True, progress=stage_progress(f"PQ {inp.name}"), metrics=metrics,
                                 dilation_ratio=dilation_ratio, pc_normalize=pc_normalize)
            else:
                notes.append("no panoptic prediction (panoptic.json lists no image): no PQ")
            ce = None
            if inp.embeddings == "gt-segments":
                log.info("Context Error of %s (%s)", inp.name, inp.pred_dir)
                inst = load_instances(inp.pred_dir, gt, workers=workers, cache_dir=cache,
                                      use_cache=True, progress=stage_progress(f"context {inp.name}"))
                found: dict[int, CategoryRetrieval] = {}
                ce = score_instances(inst, None, k=k, all_classes=all_classes, retrievals=found,
                                     index=bootstrap is not None)
                if keep_instances:
                    instances[inp.name] = inst
                    retrievals[inp.name] = found
            elif inp.embeddings is None:
                notes.append("no embeddings in the manifest: no Context Error")
            else:
                notes.append(f"embeddings are {inp.embeddings!r}; the Context Error needs 'gt-segments' "
                             f"(`pss-bench embed` pools dense features over the GT)")
            for n in notes:
                log.warning("%s: %s", inp.name, n)
            models.append(ModelComparison(inp.name, inp.pred_dir, pq, ce, tuple(notes)))

    bounds = ce_bounds(models)
    if bounds is not None and not bounds.consistent:
        log.warning("the models embed different GT instances: their random/oracle bounds differ; "
                    "the bounds shown are %s's", bounds.source)
    reference = next((i for i, m in enumerate(models)
                      if m.context_error is not None and m.context_error.mean.ce is not None), None)
    boot = _bootstrap(models, reference, bootstrap, all_classes) if bootstrap is not None else None
    return CompareResult(
        gt_json=Path(gt_json), k=k, categories=tuple(gt.categories.values()), models=tuple(models),
        bounds=bounds, reference=reference, all_classes=all_classes, bootstrap=boot, instances=instances,
        retrievals=retrievals,
    )


def _bootstrap(models: Sequence[ModelComparison], reference: int | None, settings: BootstrapSettings,
               all_classes: bool) -> CompareBootstrap:
    """Paired bootstraps: PQ over the models with a PQ, CE over those with a CE (reference first)."""
    pq_idx = tuple(i for i, m in enumerate(models) if m.pq is not None and m.pq.images is not None)
    pq = bootstrap_pq([models[i].pq.images for i in pq_idx], settings=settings) if pq_idx else None
    ce_idx = tuple(i for i, m in enumerate(models) if m.context_error is not None
                   and m.context_error.index is not None)
    if reference is not None and reference in ce_idx:
        ce_idx = (reference, *(i for i in ce_idx if i != reference))
    ce = (bootstrap_context_error([models[i].context_error.index for i in ce_idx], settings=settings,
                                  all_classes=all_classes) if ce_idx else None)
    variants = bootstrap_variants([models[i].pq for i in pq_idx], settings=settings) if pq_idx else {}
    return CompareBootstrap(settings, pq, pq_idx, ce, ce_idx, variants)


# --------------------------------------------------------------------------- per-instance CE, query choice


def instance_context_errors(inst: InstanceSet, k: int) -> np.ndarray:
    """``(n,)`` float64 CE of each instance as a query (mean pair CE over its K retrievals).

    The same retrieval (:func:`~pss_bench.evaluation.context_error.retrieve`)
    and pair CE as :func:`~pss_bench.evaluation.context_error.score_instances`;
    NaN where the instance's category has no other instance.
    """
    out = np.full(len(inst), np.nan)
    for cid in np.unique(inst.category_ids).tolist():
        r = retrieve(inst, None, k, int(cid))
        if r.query_rows.shape[0] == 0 or r.neighbours.shape[1] == 0:
            continue
        terms = PairTerms.from_distributions(inst.distributions[r.query_rows])
        out[r.query_rows] = pair_ce_rows(terms, terms, r.neighbours).mean(axis=1)
    return out


@dataclass(frozen=True)
class Query:
    """A query instance picked for the report's retrieval strips.

    Attributes:
        image_index: index into the GT's annotations.
        image_id: its image id.
        segment_id: its GT segment id.
        category_id: its category.
        ce: model name -> the instance's CE with that model's retrievals.
    """

    image_index: int
    image_id: object
    segment_id: int
    category_id: int
    ce: dict[str, float]


def _query_ce_table(model: ModelComparison) -> dict[tuple[int, int], tuple[float, int]]:
    """``{(image index, segment id): (CE, category id)}`` of the model's scored queries (no new retrieval)."""
    q = model.context_error.queries if model.context_error is not None else None
    if q is None:
        return {}
    return {
        (int(j), int(s)): (float(v), q.categories[int(ci)].id)
        for (j, s), ci, v in zip(q.keys.tolist(), q.class_index.tolist(), q.ce.tolist())
        if np.isfinite(v)
    }


def pick_queries(result: CompareResult, n: int = 3) -> list[Query]:
    """The ``n`` instances whose CE differs most between the first two models with embeddings.

    Deterministic: ties go to the earlier image, then the smaller segment id.
    With a single such model, its ``n`` worst (largest-CE) instances. Needs
    ``result.instances`` (``keep_instances=True``); empty without them.
    """
    models = {m.name: m for m in result.models if m.name in result.instances}
    names = list(models)
    if not names or n < 1:
        return []
    per: dict[str, dict[tuple[int, int], tuple[float, int]]] = {}
    for name in names[:2]:
        per[name] = _query_ce_table(models[name])
    first = per[names[0]]
    if len(names) >= 2:
        second = per[names[1]]
        keys = sorted(set(first) & set(second))
        score = {key: abs(first[key][0] - second[key][0]) for key in keys}
    else:
        keys = sorted(first)
        score = {key: first[key][0] for key in keys}
    chosen = sorted(keys, key=lambda key: (-score[key], key))[:n]
    gt_anns = next(iter(result.instances.values())).gt.annotations
    for name in names[2:]:
        per[name] = _query_ce_table(models[name])
    out = []
    for j, s in chosen:
        ces = {name: per[name][(j, s)][0] for name in names if (j, s) in per[name]}
        out.append(Query(j, gt_anns[j].image_id, s, first[(j, s)][1], ces))
    return out
