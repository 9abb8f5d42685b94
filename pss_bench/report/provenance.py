"""What produced a compare report, and how its result stands against the paper.

:func:`collect` gathers the provenance block (pss-bench version, the exact
command, each model's checkpoint / config / manifest hash, the GT JSON's hash
and image count, date, machine); :func:`paper_lines` says where the result
agrees or disagrees with the paper's Table 1. Reads files to hash them;
computes no metric and prints nothing.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from pss_bench.evaluation.compare import CompareResult

#: The paper's Table 1 (Cityscapes val, ResNet-50 models): mean Context Error of each model.
PAPER_CE = {"UPSNet": 1.16, "PSS": 1.02}
BENCHMARKS_DOC = "docs/benchmarks.md"


def sha256_file(path: str | os.PathLike) -> str | None:
    """The file's SHA-256 (hex), or ``None`` when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


@dataclass(frozen=True)
class ModelProvenance:
    """One model's inputs, from its prediction directory's manifest."""

    name: str
    pred_dir: str
    model: str | None
    checkpoint: str | None
    checkpoint_sha256: str | None
    config: str | None
    config_sha256: str | None
    manifest_sha256: str | None


@dataclass(frozen=True)
class Provenance:
    """The provenance block of a report."""

    version: str
    command: str | None
    created: str
    machine: str
    gt_json: str
    gt_sha256: str | None
    gt_images: int | None
    models: tuple[ModelProvenance, ...]

    def to_dict(self) -> dict:
        return {**asdict(self), "models": [asdict(m) for m in self.models]}

    def rows(self) -> list[tuple[str, str]]:
        """``(label, value)`` lines of the block (models apart)."""
        return [
            ("pss-bench version", self.version),
            ("command", self.command or "(not run from the command line)"),
            ("created", self.created),
            ("machine", self.machine),
            ("ground truth", self.gt_json),
            ("GT JSON SHA-256", self.gt_sha256 or "(unreadable)"),
            ("GT images", "?" if self.gt_images is None else str(self.gt_images)),
        ]


def _model(name: str, pred_dir: Path) -> ModelProvenance:
    from pss_bench.errors import PssBenchError
    from pss_bench.io.safe_read import read_json_file

    manifest = pred_dir / "manifest.json"
    try:
        m = read_json_file(manifest) if manifest.is_file() else {}
    except PssBenchError:
        m = {}
    m = m if isinstance(m, dict) else {}
    ckpt = m.get("checkpoint") if isinstance(m.get("checkpoint"), str) else None
    config = m.get("config") if isinstance(m.get("config"), str) else None
    ckpt_hash = sha256_file(ckpt) if ckpt else None
    config_hash = None
    if ckpt:  # the bundled and trained checkpoints keep their config beside them: NAME.config.yaml
        side = Path(ckpt).with_suffix(".config.yaml")
        config_hash = sha256_file(side) if side.is_file() else None
    if config and config_hash is None and Path(config).is_file():
        config_hash = sha256_file(config)
    return ModelProvenance(name, str(pred_dir), m.get("model") if isinstance(m.get("model"), str) else None,
                           ckpt, ckpt_hash, config, config_hash, sha256_file(manifest) if manifest.is_file() else None)


def version() -> str:
    """The installed pss-bench's version (package metadata; ``"unknown"`` when not installed)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _version

    try:
        return _version("pss-bench")
    except PackageNotFoundError:
        return "unknown"


def machine() -> str:
    return (f"{platform.node() or 'unknown host'} ({platform.system()} {platform.release()}, "
            f"{platform.machine()}, Python {platform.python_version()}, {os.cpu_count()} CPUs)")


def collect(result: CompareResult, command: str | None, now: _dt.datetime | None = None) -> Provenance:
    """The provenance of ``result``: hashes the GT JSON and each model's checkpoint, config and manifest."""
    from pss_bench.report.common import gt_json_facts

    now = now or _dt.datetime.now(_dt.timezone.utc)
    gt = Path(result.gt_json)
    facts = gt_json_facts(gt)
    return Provenance(
        version=version(),
        command=command,
        created=now.strftime("%Y-%m-%d %H:%M:%S UTC"),
        machine=machine(),
        gt_json=str(gt),
        gt_sha256=facts.sha256 if facts is not None else None,
        gt_images=facts.images if facts is not None else None,
        models=tuple(_model(m.name, Path(m.pred_dir)) for m in result.models),
    )


def _role(name: str, model: str | None) -> str | None:
    """``"PSS"``, ``"UPSNet"`` or ``None``, from the manifest's model, else the display name."""
    for text in (model or "", name):
        t = text.lower()
        if "upsnet" in t:
            return "UPSNet"
        if t.startswith("pss") or "pss-reference" in t:
            return "PSS"
    return None


def paper_lines(result: CompareResult, prov: Provenance) -> list[str]:
    """Sentences on where the mean Context Error ranking agrees or disagrees with the paper's Table 1."""
    roles: dict[str, int] = {}
    for i, (m, p) in enumerate(zip(result.models, prov.models)):
        r = _role(m.name, p.model)
        if r is not None and r not in roles and m.context_error is not None:
            roles[r] = i
    paper = (f"Paper, Table 1 (Cityscapes val): mean CE UPSNet {PAPER_CE['UPSNet']:.2f}, "
             f"PSS {PAPER_CE['PSS']:.2f}: PSS lower by {100 * (1 - PAPER_CE['PSS'] / PAPER_CE['UPSNet']):.1f}%.")
    if len(roles) < 2:
        return [paper, "Not compared here: the paper's comparison needs a PSS and an UPSNet model with a Context "
                       "Error (recognised by the manifest's model or the name)."]
    pss, ups = roles["PSS"], roles["UPSNet"]
    names = [m.name for m in result.models]
    ce_pss, ce_ups = result.models[pss].context_error.mean.ce, result.models[ups].context_error.mean.ce
    if ce_pss is None or ce_ups is None:
        return [paper, "Not compared here: a mean Context Error is undefined."]
    # The paired interval of PSS − UPSNet: the bootstrap's difference to the reference, turned round if needed.
    diff = None
    bs = result.bootstrap
    if bs is not None and bs.context_error is not None and pss in bs.ce_models and ups in bs.ce_models:
        ref = bs.ce_models[0]
        if ref in (pss, ups):
            other = ups if ref == pss else pss
            d = bs.context_error.differences[bs.ce_models.index(other)]
            if d is not None and d.ce.estimate is not None:
                sign = -1.0 if other == ups else 1.0  # stored: other − ref
                lo, hi = d.ce.low, d.ce.high
                if lo is not None and hi is not None and sign < 0:
                    lo, hi = -hi, -lo
                diff = (sign * d.ce.estimate, lo, hi, d.ce.p_value, d.ce.significant)
    if diff is None:
        est = ce_pss - ce_ups
        rel = est / ce_ups
        here = (f"Here: {names[pss]} {ce_pss:.3f}, {names[ups]} {ce_ups:.3f} (Δ {est:+.3f}, {100 * rel:+.1f}%), "
                "without an interval (--bootstrap 0)")
        significant = None
    else:
        est, lo, hi, p, significant = diff
        rel = est / ce_ups
        ci = f" [{lo:+.3f}, {hi:+.3f}]" if lo is not None and hi is not None else ""
        pt = "" if p is None else (", p < 0.001" if p < 0.001 else f", p = {p:.3f}")
        here = (f"Here: {names[pss]} {ce_pss:.3f}, {names[ups]} {ce_ups:.3f}: Δ {names[pss]} − {names[ups]} = "
                f"{est:+.3f}{ci} ({100 * rel:+.1f}%{pt})")
    if significant is None:
        verdict = ("agrees in direction with the paper (PSS lower)" if est < 0 else
                   "disagrees in direction with the paper (PSS not lower)") + "; no significance without intervals."
    elif not significant:
        verdict = "inconclusive: the difference is not significant, so neither agrees nor disagrees with the paper."
    elif est < 0:
        verdict = "agrees with the paper: PSS's embeddings give the lower Context Error (significant)."
    else:
        verdict = ("disagrees with the paper: here PSS has the higher Context Error (significant), the reverse of "
                   f"Table 1. {BENCHMARKS_DOC} (\"The verdict\") measures the same on the demo's bundled tiny "
                   "models and explains it: small CPU-trained models on SynthStreets with different training "
                   "budgets, not the paper's R50 models on Cityscapes.")
    magnitude = ""
    if significant is not False:
        magnitude = (f" The paper's gap is {100 * (PAPER_CE['PSS'] / PAPER_CE['UPSNet'] - 1):+.1f}%; here "
                     f"{100 * rel:+.1f}%. Absolute CEs depend on the dataset and K (here K = {result.k}) and are "
                     "not comparable across datasets.")
    return [paper, f"{here}: {verdict}{magnitude}",
            "PQ is not checked against the paper here (its table gives Context Error); the bundled models' measured "
            f"PQs are in {BENCHMARKS_DOC}."]


def command_line(prog: str, args: Sequence[str]) -> str:
    """The command as a shell would take it back: ``pss-bench compare a b --gt 'x y.json'``."""
    import shlex

    return shlex.join([prog, *args])
