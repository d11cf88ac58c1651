"""SavedModel -> ONNX: the TensorFlow graph cut, graph edits, SSD and Faster R-CNN."""
