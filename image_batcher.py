"""Images in, batches out, by the sample's old name: loading (tfod_trt.io.images), TFOD's exact
resize (tfod_trt.io.resize), the resizer settings (tfod_trt.config.preprocessor) and batching
(tfod_trt.io.batcher)."""

from tfod_trt.config.preprocessor import *  # noqa: F403
from tfod_trt.io.batcher import *  # noqa: F403
from tfod_trt.io.images import *  # noqa: F403
from tfod_trt.io.resize import *  # noqa: F403
