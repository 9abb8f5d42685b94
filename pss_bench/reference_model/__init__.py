"""The PSS reference model (Panoptic Segment Sorting, Hwang, Ke, Yu, MULL @ ICCV 2021).

Registered as the model ``pss`` (:mod:`~pss_bench.reference_model.registration`);
the trainer, predictor, registry, config loader and backbone it shares with
every model live in :mod:`pss_bench.models`.

Modules:

* :mod:`~pss_bench.reference_model.config`: its config sections (``kmeans``, ``loss``, ``inference``) and shipped ``configs/*.yaml``;
* :mod:`~pss_bench.reference_model.network`: embedding and seeding heads on the shared ResNet-FPN, segment classifier;
* :mod:`~pss_bench.reference_model.kmeans`: batched spherical k-means;
* :mod:`~pss_bench.reference_model.loss`: SegSort loss with panoptic labels, classifier and seed losses;
* :mod:`~pss_bench.reference_model.model`: its training module (losses + prototype memory) and one-image prediction;
* :mod:`~pss_bench.reference_model.postprocess`: inference post-processing as pure functions;
* :mod:`~pss_bench.reference_model.oracle`: ideal-input bounds of the post-processing.

Importing this package does not import torch; import the submodules.
"""
