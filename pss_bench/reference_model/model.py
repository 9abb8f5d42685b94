"""PSS in the trainer and the predictor: its training module and its one-image prediction.

Registered as ``pss`` by :mod:`pss_bench.reference_model.registration`; the
generic trainer and predictor (:mod:`pss_bench.models.train`,
:mod:`pss_bench.models.predict`) call these through the registry.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from pss_bench.models.config import Config
from pss_bench.reference_model.loss import PrototypeMemory, pss_losses
from pss_bench.reference_model.postprocess import panoptic_inference, to_panoptic
from pss_bench.structures import Category


class PSSTrainingModule(nn.Module):
    """Network + losses in one ``forward``, so DDP sees every parameter used there.

    Owns the prototype memory (``loss.memory_iterations`` past batches of
    prototypes): ``forward`` reads it, :meth:`after_step` pushes the batch's
    prototypes once the optimiser has stepped, and it travels in
    ``checkpoint_last.pt`` as ``memory``.
    """

    def __init__(self, net: nn.Module, cfg: Config, thing_classes: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.memory = PrototypeMemory(cfg.loss.memory_iterations)
        self.register_buffer("thing_classes", thing_classes, persistent=False)

    def forward(self, batch: dict, memory: PrototypeMemory | None = None):
        if memory is None and self.memory.length > 0:
            memory = self.memory
        amp = self.cfg.train.amp and batch["image"].device.type == "cuda"
        with torch.autocast(batch["image"].device.type, dtype=torch.bfloat16, enabled=amp):
            out = self.net(batch["image"])
        return pss_losses(out, batch, self.net.classifier, self.thing_classes, self.cfg.loss, self.cfg.kmeans, memory)

    def after_step(self, segments) -> None:
        if segments is not None:
            self.memory.push(segments)

    def training_state(self) -> dict:
        return {"memory": self.memory.state_dict()}

    def load_training_state(self, payload: dict) -> None:
        if "memory" in payload:
            self.memory.load_state_dict(payload["memory"])


def training_module(net: nn.Module, cfg: Config, categories: Sequence[Category]) -> PSSTrainingModule:
    return PSSTrainingModule(net, cfg, torch.tensor([c.isthing for c in categories], dtype=torch.bool))


@torch.no_grad()
def predict_image(net, item_image: torch.Tensor, thing_classes: torch.Tensor, cfg: Config, amp: bool = False):
    """Network + post-processing of one ``(3, H, W)`` image.

    Returns:
        ``(out, embedding)``: the :class:`~pss_bench.reference_model.postprocess.PanopticOutput`
        and the ``(D, h, w)`` embeddings.
    """
    dev = item_image.device
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp and dev.type == "cuda"):
        o = net(item_image[None])
    emb = o["embedding"][0].float()
    seed_map = o["seed"][0, 0].float()
    if cfg.loss.seed_loss == "focal":
        seed_map = torch.sigmoid(seed_map)
    res = panoptic_inference(
        emb, net.classifier, thing_classes, cfg.inference, seed_map=seed_map,
        iterations=cfg.kmeans.iterations, coord_weight=cfg.kmeans.coord_weight,
        kmeans_pool=2 if cfg.model.output_stride == 2 else 1,
    )
    return res, emb


@torch.no_grad()
def predict(net, image: torch.Tensor, categories: Sequence[Category], cfg: Config):
    """PSS's :func:`~pss_bench.models.predict.predict_panoptic`: the embeddings are the features."""
    h, w = image.shape[-2:]
    thing = torch.tensor([c.isthing for c in categories], device=image.device)
    res, emb = predict_image(net, image, thing, cfg, amp=cfg.train.amp)
    ids, info = to_panoptic(res, [c.id for c in categories], (h, w))
    return ids, info, emb, res.embeddings
