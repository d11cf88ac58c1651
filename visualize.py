"""Pictures of detections, by the sample's old name (tfod_trt.io.pictures)."""

from tfod_trt.io.pictures import *  # noqa: F403
