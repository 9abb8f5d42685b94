"""Every result type of the metrics, in one place: what an evaluation returns and ``to_dict`` writes.

- Panoptic quality: :class:`PQRow` (All / Things / Stuff), :class:`PQClassResult`,
  :class:`PQResult` (made by :class:`~pss_bench.metrics.pq.PQStats`).
- Context Error: :class:`CERow`, :class:`QueryScores` (per query, for the
  bootstrap), :class:`ContextErrorResult` (made by
  :class:`~pss_bench.metrics.context_error.ContextErrorStats`).
- Bootstrap intervals and paired differences: :class:`Interval`,
  :class:`Difference`, and the PQ and Context Error tables built of them
  (made by :mod:`pss_bench.metrics.bootstrap`).

They are plain frozen dataclasses of numbers; the modules that compute them
re-export them under their old names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from pss_bench.structures import Category

if TYPE_CHECKING:
    from pss_bench.metrics.bootstrap import BootstrapSettings
    from pss_bench.metrics.ce_resample import CEIndex
    from pss_bench.metrics.pq import PQImageStats


# --------------------------------------------------------------------------- panoptic quality


@dataclass(frozen=True)
class PQRow:
    """One of the All / Things / Stuff rows, as fractions."""

    pq: float
    sq: float
    rq: float
    n: int

    def to_dict(self) -> dict:
        return {"pq": self.pq, "sq": self.sq, "rq": self.rq, "n": self.n}


@dataclass(frozen=True)
class PQClassResult:
    """Scores and summed statistics of one category (PQ = SQ = RQ = 0 when absent)."""

    pq: float
    sq: float
    rq: float
    tp: int
    fp: int
    fn: int
    iou: float

    @property
    def present(self) -> bool:
        """Whether the class counts in the means (``TP + FP + FN > 0``)."""
        return self.tp + self.fp + self.fn > 0

    def to_dict(self) -> dict:
        return {
            "pq": self.pq, "sq": self.sq, "rq": self.rq,
            "tp": self.tp, "fp": self.fp, "fn": self.fn, "iou": self.iou,
        }


@dataclass(frozen=True)
class PQResult:
    """The result of a PQ evaluation; a row is ``None`` when it has no class.

    ``images`` holds the per-image statistics when the evaluation kept them
    (for the bootstrap); it is not part of :meth:`to_dict`. ``variants``
    holds the metrics asked for besides PQ (Boundary PQ, PQ†, Parsing
    Covering, PQ by size), ``variant_images`` their per-image
    :class:`~pss_bench.metrics.variants.VariantStats` (a
    :class:`~pss_bench.metrics.variants.PackedVariantImages` from
    :func:`~pss_bench.evaluation.pq.evaluate_pq`: a sequence of them, kept packed).
    """

    all: PQRow | None
    things: PQRow | None
    stuff: PQRow | None
    per_class: Mapping[int, PQClassResult]
    categories: Mapping[int, Category]
    images: PQImageStats | None = field(default=None, compare=False, repr=False)
    variants: VariantResult | None = None
    variant_images: Sequence | None = field(default=None, compare=False, repr=False)

    def row(self, name: str) -> PQRow | None:
        return {"All": self.all, "Things": self.things, "Stuff": self.stuff}[name]

    def to_dict(self) -> dict:
        """panopticapi's result structure, plus per-class counts and IoU sums."""
        out: dict = {}
        for name in ("All", "Things", "Stuff"):
            row = self.row(name)
            out[name] = row.to_dict() if row is not None else None
        out["per_class"] = {str(cid): r.to_dict() for cid, r in self.per_class.items()}
        if self.variants is not None:
            out.update(self.variants.to_dict())
        return out


# --------------------------------------------------------------------------- Context Error


@dataclass(frozen=True)
class CERow:
    """CE, bounds and normalised score of one class or of the mean.

    ``score = (random - ce) / (random - oracle)``: 0 for a random retrieval,
    1 for the oracle; ``None`` when ``random <= oracle``.
    ``precision`` is context precision@K (``None`` without context labels).
    ``informative`` (classes only): whether ``K`` leaves some instances
    unretrieved (``others > K``); an uninformative class has CE = random =
    oracle whatever the embedding. ``classes`` (means only): how many classes
    the mean averages.
    """

    ce: float | None
    random: float | None
    oracle: float | None
    score: float | None
    queries: int
    precision: float | None = None
    informative: bool | None = None
    classes: int | None = None

    def to_dict(self) -> dict:
        return {
            "ce": self.ce, "random": self.random, "oracle": self.oracle, "score": self.score,
            "queries": self.queries, "precision": self.precision, "informative": self.informative,
            "classes": self.classes,
        }


@dataclass(frozen=True)
class QueryScores:
    """The per-query values behind a Context Error result: what the bootstrap resamples.

    Attributes:
        categories: the thing categories (the class axis).
        k: the requested K.
        class_index: ``(n,)`` int64 each query's index into ``categories``.
        keys: ``(n, 2)`` int64 ``(image index, segment id)`` of each query: its
            identity, which pairs the queries of two models on the same GT.
        ce, random, oracle: ``(n,)`` float64 per-query CE and bounds.
        precision: ``(n,)`` float64 context precision@K, NaN when unlabelled.
        others: ``(n_classes,)`` int64 gallery instances each query of the
            class could retrieve (0 for a class without queries).
    """

    categories: tuple[Category, ...]
    k: int
    class_index: np.ndarray
    keys: np.ndarray
    ce: np.ndarray
    random: np.ndarray
    oracle: np.ndarray
    precision: np.ndarray
    others: np.ndarray

    def __len__(self) -> int:
        return int(self.class_index.shape[0])

    def informative(self) -> np.ndarray:
        """``(n_classes,)`` bool: the classes with a query and ``others > K``."""
        counts = np.bincount(self.class_index, minlength=len(self.categories))
        return (counts > 0) & (self.others > self.k)


@dataclass(frozen=True)
class ContextErrorResult:
    """The result of a Context Error evaluation.

    Attributes:
        k: the requested number of neighbours.
        categories: the thing categories, in the GT JSON's order.
        per_class: category id -> :class:`CERow` (every thing category; a
            class with no query has ``None`` values and ``queries == 0``).
        mean: the headline mean: over the informative classes with queries
            (default), or over every class with queries when ``all_classes``;
            its score is computed from the mean CE and bounds.
        mean_all_classes: the paper's plain mean over every class with a
            query, informative or not (equal to ``mean`` with ``all_classes``).
        all_classes: which classes ``mean`` averages.
        queries: the per-query values; ``None`` when the result was built
            from summed statistics only. Not in :meth:`to_dict`.
        index: what the bootstrap resamples
            (:class:`~pss_bench.metrics.ce_resample.CEIndex`), when the
            evaluation was asked for it. Not in :meth:`to_dict`.
    """

    k: int
    categories: tuple[Category, ...]
    per_class: dict[int, CERow]
    mean: CERow
    mean_all_classes: CERow | None = None
    all_classes: bool = False
    queries: QueryScores | None = field(default=None, compare=False, repr=False)
    index: "CEIndex | None" = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "all_classes": self.all_classes,
            "per_class": {str(cid): row.to_dict() for cid, row in self.per_class.items()},
            "mean": self.mean.to_dict(),
            "mean_all_classes": self.mean_all_classes.to_dict() if self.mean_all_classes is not None else None,
        }


# --------------------------------------------------------------------------- bootstrap


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile interval (``None`` where undefined)."""

    estimate: float | None
    low: float | None
    high: float | None

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Difference:
    """``model - reference`` with its interval and paired-bootstrap p-value.

    ``significant``: ``p < 1 - level`` (``None`` when undefined).
    """

    estimate: float | None
    low: float | None
    high: float | None
    p_value: float | None
    significant: bool | None

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "p_value": self.p_value,
                "significant": self.significant}


@dataclass(frozen=True)
class PQModelBootstrap:
    """One model's PQ intervals (fractions, like :class:`~pss_bench.metrics.pq.PQResult`).

    Attributes:
        rows: ``"All" | "Things" | "Stuff"`` -> ``{"pq", "sq", "rq"}`` intervals.
            Each mean is over the classes of the evaluated set in every
            resample (``classes`` of them).
        per_class: category id -> interval of the class PQ (classes present
            in the evaluation).
        few_segments: row -> the classes of its mean with at least one but
            fewer than :data:`~pss_bench.metrics.bootstrap.FEW_SEGMENTS` GT
            segments: their PQ rests on a handful of segments, an error that
            no resampling of these images can show; with
            :attr:`PQBootstrap.few_segment_term` their PQ and RQ are drawn from
            a posterior of their rates in every resample instead.
        classes: row -> the number of classes in its mean.
        gt_segments: category id -> GT segments (TP + FN) of the evaluated set.
        no_gt: row -> the classes of its mean with false positives but no GT
            in the evaluated set: PQ 0 in the estimate; their PQ in a
            population that has their GT is not measured. With
            :attr:`PQBootstrap.few_segment_term` the row's PQ and RQ intervals
            (and the class's own) join the interval with the class at 0 and
            the one with its rates drawn from their posterior (its unseen GT
            from the prior).
    """

    rows: dict[str, dict[str, Interval]]
    per_class: dict[int, Interval]
    few_segments: dict[str, tuple[int, ...]] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    gt_segments: dict[int, int] = field(default_factory=dict)
    no_gt: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"rows": {r: {k: v.to_dict() for k, v in d.items()} for r, d in self.rows.items()},
                "per_class": {str(c): v.to_dict() for c, v in self.per_class.items()},
                "few_segments": {r: list(v) for r, v in self.few_segments.items()},
                "classes": dict(self.classes),
                "gt_segments": {str(c): v for c, v in self.gt_segments.items()},
                "no_gt": {r: list(v) for r, v in self.no_gt.items()}}


@dataclass(frozen=True)
class PQComparison:
    """PQ of a model against the reference: differences on the same resampled images.

    Attributes:
        rows: ``"All" | "Things" | "Stuff"`` -> ``{"pq", "sq", "rq"}`` Δ of the
            means over the classes both models have.
        per_class: category id -> Δ class PQ.
        left_out: classes only one of the two models has (a false positive of
            a class without GT): in neither mean of the Δ rows.
    """

    rows: dict[str, dict[str, Difference]]
    per_class: dict[int, Difference]
    left_out: tuple[int, ...] = ()

    def to_dict(self) -> dict:
        return {"rows": {r: {k: v.to_dict() for k, v in d.items()} for r, d in self.rows.items()},
                "per_class": {str(c): v.to_dict() for c, v in self.per_class.items()},
                "left_out": list(self.left_out)}


@dataclass(frozen=True)
class PQBootstrap:
    """PQ intervals of several models on the same images, with paired differences to the first.

    Attributes:
        few_segment_term: whether the classes of ``few_segments`` were drawn
            from the posterior of their rates in every resample
            (:func:`~pss_bench.metrics.bootstrap.few_segment_draws`); without
            it their intervals are too narrow.
    """

    settings: BootstrapSettings
    models: tuple[PQModelBootstrap, ...]
    differences: tuple[PQComparison | None, ...]
    few_segment_term: bool = False

    def to_dict(self) -> dict:
        return {"settings": self.settings.to_dict(), "few_segment_term": self.few_segment_term,
                "models": [m.to_dict() for m in self.models],
                "differences": [d.to_dict() if d is not None else None for d in self.differences]}


@dataclass(frozen=True)
class CEModelBootstrap:
    """One model's Context Error intervals.

    Attributes:
        per_class: category id -> ``{"ce", "random", "oracle", "score",
            "precision"}`` intervals (classes with queries).
        mean: the same for the mean over ``classes``.
        classes: the classes in the mean (informative ones unless ``all_classes``).
    """

    per_class: dict[int, dict[str, Interval]]
    mean: dict[str, Interval]
    classes: tuple[int, ...]

    def to_dict(self) -> dict:
        return {
            "per_class": {str(c): {k: v.to_dict() for k, v in d.items()} for c, d in self.per_class.items()},
            "mean": {k: v.to_dict() for k, v in self.mean.items()},
            "classes": list(self.classes),
        }


@dataclass(frozen=True)
class CEComparison:
    """Context Error of a model against the reference, over the classes both have.

    Attributes:
        classes: the classes in both means (both have queries, and both are
            informative unless ``all_classes``); every Δ of a mean averages
            over these only.
        ce: Δ mean CE (model - reference), absolute.
        relative: Δ mean CE / reference mean CE, over the same classes (the
            paper's "-13.7%"); its p-value is that of ``ce``.
        score: Δ of the normalised score of the means over those classes.
        precision: Δ of the mean context precision@K (``None`` values
            without context labels).
        per_class: category id -> Δ class CE, for classes both have queries in.
        paired: whether both models have exactly the same queries in those
            classes (otherwise the queries are resampled from their union).
    """

    classes: tuple[int, ...]
    ce: Difference
    relative: Difference
    score: Difference
    precision: Difference
    per_class: dict[int, Difference]
    paired: bool

    def to_dict(self) -> dict:
        return {"classes": list(self.classes), "ce": self.ce.to_dict(), "relative": self.relative.to_dict(),
                "score": self.score.to_dict(), "precision": self.precision.to_dict(),
                "per_class": {str(c): d.to_dict() for c, d in self.per_class.items()}, "paired": self.paired}


@dataclass(frozen=True)
class CEBootstrap:
    """Context Error intervals of several models, with paired differences to the first.

    Attributes:
        settings: resamples, level, seed.
        all_classes: whether means average every class with queries.
        models: one entry per query table, in order.
        differences: ``None`` for the first model, then each model against it.
    """

    settings: BootstrapSettings
    all_classes: bool
    models: tuple[CEModelBootstrap, ...]
    differences: tuple[CEComparison | None, ...]

    def to_dict(self) -> dict:
        return {"settings": self.settings.to_dict(), "all_classes": self.all_classes,
                "models": [m.to_dict() for m in self.models],
                "differences": [d.to_dict() if d is not None else None for d in self.differences]}


# --------------------------------------------------------------------------- PQ variants and Parsing Covering


@dataclass(frozen=True)
class BoundaryPQResult:
    """Boundary PQ: PQ with ``min(mask IoU, boundary IoU)`` in place of the mask IoU."""

    pq: PQResult
    dilation_ratio: float

    def to_dict(self) -> dict:
        return {**self.pq.to_dict(), "dilation_ratio": self.dilation_ratio}


@dataclass(frozen=True)
class PQDaggerRow:
    """A PQ† row: the mean over its classes, and how many."""

    pq: float
    n: int

    def to_dict(self) -> dict:
        return {"pq": self.pq, "n": self.n}


@dataclass(frozen=True)
class PQDaggerResult:
    """PQ† (Porzi et al.): PQ for things, the IoU-above-0 average for stuff.

    ``per_class`` holds every category (0.0 for a class that is not counted);
    ``counted`` the ids of the classes in the means.
    """

    all: PQDaggerRow | None
    things: PQDaggerRow | None
    stuff: PQDaggerRow | None
    per_class: Mapping[int, float]
    counted: frozenset = frozenset()

    def row(self, name: str) -> PQDaggerRow | None:
        return {"All": self.all, "Things": self.things, "Stuff": self.stuff}[name]

    def to_dict(self) -> dict:
        out: dict = {}
        for name in ("All", "Things", "Stuff"):
            r = self.row(name)
            out[name] = r.to_dict() if r is not None else None
        out["per_class"] = {str(cid): {"pq": v} for cid, v in self.per_class.items()}
        return out


@dataclass(frozen=True)
class PCResult:
    """Parsing Covering (DeeperLab): the mean over classes with GT area of each class's covering.

    ``pc`` is ``None`` when no class has GT area; ``per_class`` holds every
    category (0.0 without GT area, as tf-models' ``realdiv_maybe_zero``);
    ``n`` is the number of classes in the mean, ``counted`` their ids.
    """

    pc: float | None
    n: int
    per_class: Mapping[int, float]
    normalize_by_image_size: bool
    counted: frozenset = frozenset()

    def to_dict(self) -> dict:
        return {
            "All": {"pc": self.pc} if self.pc is not None else None,
            "per_class": {str(cid): {"pc": v} for cid, v in self.per_class.items()},
            "normalize_by_image_size": self.normalize_by_image_size,
        }


@dataclass(frozen=True)
class PQAreaResult:
    """PQ per COCO object size: one :class:`PQResult` per area range."""

    small: PQResult
    medium: PQResult
    large: PQResult
    ranges: tuple[tuple[int, int | None], ...]

    def by_name(self) -> dict[str, PQResult]:
        return {"small": self.small, "medium": self.medium, "large": self.large}

    def to_dict(self) -> dict:
        out: dict = {name: r.to_dict() for name, r in self.by_name().items()}
        out["ranges"] = [list(r) for r in self.ranges]
        return out


@dataclass(frozen=True)
class VariantResult:
    """The metrics asked for beside PQ; ``None`` for those not asked."""

    boundary_pq: BoundaryPQResult | None = None
    pq_dagger: PQDaggerResult | None = None
    pc: PCResult | None = None
    pq_area: PQAreaResult | None = None

    def to_dict(self) -> dict:
        """Only the keys of the metrics asked for: ``boundary_pq``, ``pq_dagger``, ``pc``, ``pq_area``."""
        out: dict = {}
        for key in ("boundary_pq", "pq_dagger", "pc", "pq_area"):
            r = getattr(self, key)
            if r is not None:
                out[key] = r.to_dict()
        return out
