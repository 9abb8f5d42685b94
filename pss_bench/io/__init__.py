"""File formats: COCO panoptic JSON + PNG, prediction directories."""
