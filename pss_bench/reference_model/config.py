"""The PSS reference model's config sections: k-means, losses and inference post-processing.

:mod:`pss_bench.reference_model.registration` registers them as the
``kmeans``, ``loss`` and ``inference`` sections of every
:class:`~pss_bench.models.config.Config`, with the ranges below. The sections
every architecture shares (``model``, ``data``, ``train``) and the YAML
loader live in :mod:`pss_bench.models.config`.

No training logic here, no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pss_bench.models.config import MAX_GRID, Config, ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
# The whole config (every section); the name PSS's modules have always used.
PSSConfig = Config


@dataclass
class KMeansConfig:
    """Spherical k-means over-segmentation.

    Attributes:
        grid: ``[rows, cols]`` of the regular initialisation grid (number of
            clusters = rows * cols).
        iterations: EM iterations.
        coord_weight: weight of the ``[0, 1]``-normalised pixel coordinates
            concatenated to the embeddings before re-normalising; 0 disables.
    """

    grid: list[int] = field(default_factory=lambda: [8, 16])
    iterations: int = 10
    coord_weight: float = 1.0


@dataclass
class LossConfig:
    """Training losses.

    Attributes:
        kappa: concentration of the von Mises-Fisher pixel-segment likelihood.
        memory_iterations: keep the prototypes of this many past iterations as
            extra (stuff of the same class: positive, else negative) segments.
        segsort_weight, classifier_weight, seed_weight: loss weights.
        seed_sigma: standard deviation of the Gaussian centre targets, in input pixels
            (with ``seed_sigma_scale``: the largest one).
        seed_sigma_scale: when positive, an instance of ``A`` input pixels
            gets the standard deviation ``seed_sigma_scale * sqrt(A)``, at
            least 1 pixel and at most ``seed_sigma`` (CenterNet sizes its
            centre Gaussians by the object); 0: ``seed_sigma`` for all.
        small_instance_area: instances with fewer input pixels than this get
            hybrid-scale prototypes (2x upscaled embeddings); 0 disables.
        seed_loss: ``focal``: the seed head predicts centre logits, trained
            with CenterNet's penalty-reduced focal loss (alpha 2, beta 4)
            normalised by the number of centres; ``mse``: a regressed Gaussian
            heatmap (checkpoints written before the focal loss existed).
        max_pixels: evaluate the SegSort likelihood on at most this many
            uniformly drawn labelled pixels per batch (prototypes still use all
            pixels); 0: all. Keeps stride-2 training affordable.
        pixel_balance: with ``max_pixels``, draw the pixels with probability
            proportional to (area of their segment) ** -pixel_balance: 0 is the
            pixel mean of the paper's loss, 1 weighs every GT segment of the
            batch alike. In the pixel mean the small instances, which decide
            PQ-Th, hardly count.
        classifier_balance: weigh each segment's cross-entropy by (segments
            of its GT class in the batch) ** -classifier_balance: 0 is the
            plain mean over segments, 1 weighs every class of the batch alike
            (PQ averages over classes; a rare class such as rider is a few
            segments among thousands).
    """

    kappa: float = 10.0
    memory_iterations: int = 0
    segsort_weight: float = 1.0
    classifier_weight: float = 1.0
    seed_weight: float = 1.0
    seed_sigma: float = 8.0
    seed_sigma_scale: float = 0.0
    small_instance_area: int = 0
    seed_loss: str = "focal"
    max_pixels: int = 0
    pixel_balance: float = 0.0
    classifier_balance: float = 0.0


@dataclass
class InferenceConfig:
    """Post-processing (all thresholds chosen on validation data).

    Attributes:
        grid: k-means grid at inference (``[rows, cols]``).
        concentration_threshold: T_S; segments with ``||sum v|| / |R|`` below it are re-split.
        split_k: clusters of the re-split (paper: 4).
        merge_threshold: T_P; minimum cosine similarity for thing merging.
        seeded: use the seeded merging variant.
        seed_threshold: minimum centre-heatmap peak value of a seed.
        seed_nms_kernel: max-pool window of the seed peak detection (stride-4 pixels).
        seed_nms_tolerance: a cell within this much of its window's maximum
            is a peak too: two instances whose centres fall in neighbouring
            cells both get a peak where the sigmoid saturates (0.95 next to
            0.97); 0 keeps exact maxima only.
        thing_score_threshold: thing segments whose class probability (of
            the merged prototype) is below this become VOID, as detectron2
            and UPSNet drop instances under a confidence of 0.5; 0 keeps all.
        min_area: segments (after merging) smaller than this many stride-4
            pixels are dropped to VOID.
        merge_adjacent: merge only thing segments that touch (4-neighbourhood
            at the embedding's resolution); False merges any pair, as the paper.
        smooth_iterations: ours: before the classes of the over-segments are
            taken, their class probabilities are averaged this many times
            over each segment and its touching neighbours, weighted by area
            and the von Mises-Fisher similarity ``exp(smooth_kappa * (cos - 1))``
            of their prototypes (a segment's neighbours of like embedding
            vote on its class, as SegSort's retrieval votes with
            ``exp(kappa * cos)``); 0 classifies each segment alone (the paper).
        smooth_kappa: the concentration of those weights.
    """

    grid: list[int] = field(default_factory=lambda: [8, 16])
    concentration_threshold: float = 0.9
    split_k: int = 4
    merge_threshold: float = 0.8
    seeded: bool = True
    seed_threshold: float = 0.3
    seed_nms_kernel: int = 7
    seed_nms_tolerance: float = 0.0
    thing_score_threshold: float = 0.0
    min_area: int = 4
    merge_adjacent: bool = False
    smooth_iterations: int = 0
    smooth_kappa: float = 10.0


# key -> (lower bound, whether the bound itself is allowed, upper bound or None); ints and floats alike.
RANGES: dict[str, tuple[float, bool, float | None]] = {
    "kmeans.grid": (1, True, MAX_GRID), "kmeans.iterations": (1, True, 10_000), "kmeans.coord_weight": (0, True, None),
    "loss.kappa": (0, False, None), "loss.memory_iterations": (0, True, None),
    "loss.segsort_weight": (0, True, None), "loss.classifier_weight": (0, True, None),
    "loss.seed_weight": (0, True, None), "loss.seed_sigma": (0, False, None),
    "loss.seed_sigma_scale": (0, True, None), "loss.small_instance_area": (0, True, None),
    "loss.max_pixels": (0, True, None), "loss.pixel_balance": (0, True, 1), "loss.classifier_balance": (0, True, 1),
    "inference.grid": (1, True, MAX_GRID), "inference.split_k": (1, True, MAX_GRID),
    "inference.merge_threshold": (-1, True, 1), "inference.seed_nms_kernel": (1, True, 255),
    "inference.seed_nms_tolerance": (0, True, 1), "inference.thing_score_threshold": (0, True, 1),
    "inference.min_area": (0, True, None), "inference.smooth_iterations": (0, True, 1000),
    "inference.smooth_kappa": (0, True, None),
}
# Lists of a fixed length.
LENGTHS = {"kmeans.grid": 2, "inference.grid": 2}


def check_config(cfg: Config) -> None:
    """What ranges cannot say about PSS's sections.

    Raises:
        ConfigError: an unknown ``loss.seed_loss``.
    """
    if cfg.loss.seed_loss not in ("focal", "mse"):
        raise ConfigError(f"loss.seed_loss: must be 'focal' or 'mse', found {cfg.loss.seed_loss!r}")
