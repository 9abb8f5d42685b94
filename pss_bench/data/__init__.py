"""Dataset readers and preparation (Cityscapes, COCO panoptic, VOC) and the SynthStreets generator.

* :mod:`~pss_bench.data.sample`: the :class:`PanopticSample` every reader yields
  and the training-item dict contract.
* :mod:`~pss_bench.data.cityscapes`: :class:`CityscapesPanoptic`, ``prepare_cityscapes``
  (cityscapesscripts' converter, checked before and validated after).
* :mod:`~pss_bench.data.coco`: :class:`CocoPanoptic`.
* :mod:`~pss_bench.data.voc`: :class:`VocPanoptic`, ``convert_voc``.
* :mod:`~pss_bench.data.transforms` and :mod:`~pss_bench.data.torch_dataset`:
  the one training augmentation (``TrainTransform``) and the torch ``Dataset`` wrapper.
* :mod:`~pss_bench.data.synthstreets`: the SynthStreets generator and its
  hidden context labels.

Nothing is imported here, so ``import pss_bench.data.X`` stays light.
"""
