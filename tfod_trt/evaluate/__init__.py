"""Judging models: COCO mAP, TensorFlow parity of a converted graph, side-by-side comparison."""
