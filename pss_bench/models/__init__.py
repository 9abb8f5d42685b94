"""What every model shares, knowing none by name: registry, config, backbone, data, trainer, predictor.

Models register themselves (:mod:`pss_bench.models.registry`): PSS from
``pss_bench/reference_model/``, the UPSNet-style baseline from
``pss_bench/baselines/upsnet/``. Importing this package does not import torch.
"""
