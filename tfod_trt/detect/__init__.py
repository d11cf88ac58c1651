"""Detection over images: a runner's batches -> detections in pixels, serially or pipelined."""
