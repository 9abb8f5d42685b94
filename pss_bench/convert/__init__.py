"""Input converters: other panoptic layouts to COCO panoptic and back.

* :mod:`pss_bench.convert.labels`: pure array functions
  (``semantic_instance_to_panoptic``, ``panoptic_to_semantic_instance``,
  ``combine_instances_and_semantic``, ``panoptic_to_detection``,
  ``panoptic_to_semantic``);
* :mod:`pss_bench.convert.files`: the same over folders and JSON files, as
  used by ``pss-bench convert``.
"""
