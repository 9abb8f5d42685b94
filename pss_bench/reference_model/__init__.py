"""The PSS reference model (Panoptic Segment Sorting, Hwang, Ke, Yu, MULL @ ICCV 2021).

Modules:

* :mod:`~pss_bench.reference_model.config`: dataclass configs loaded from YAML (``configs/*.yaml``);
* :mod:`~pss_bench.reference_model.registry`: ``create_model`` (architecture only), ``load_checkpoint``;
* :mod:`~pss_bench.reference_model.network`: ResNet-FPN, UPSNet-style embedding and seeding heads, segment classifier;
* :mod:`~pss_bench.reference_model.kmeans`: batched spherical k-means;
* :mod:`~pss_bench.reference_model.loss`: SegSort loss with panoptic labels, classifier and seed losses;
* :mod:`~pss_bench.reference_model.postprocess`: inference post-processing as pure functions;
* :mod:`~pss_bench.reference_model.data`, :mod:`~pss_bench.reference_model.train`: data hook, training loop.

Importing this package does not import torch; import the submodules.
"""
