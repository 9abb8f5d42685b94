"""Dataset readers and preparation (Cityscapes, COCO panoptic, VOC)."""
