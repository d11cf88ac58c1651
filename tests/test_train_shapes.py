"""tools/train_shapes.py on a Faster R-CNN: the committed config trains with TFOD's own losses of
both stages, and a restarted run resumes from its last checkpoint."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures import have_tensorflow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import make_shapes_dataset as shapes  # noqa: E402

CONFIG = ROOT / "configs" / "shapes_faster_rcnn_resnet50_256.config"
FASTER_RCNN_LOSSES = {"RPNLoss/localization_loss", "RPNLoss/objectness_loss",
                      "BoxClassifierLoss/localization_loss",
                      "BoxClassifierLoss/classification_loss"}

pytestmark = pytest.mark.skipif(not have_tensorflow(), reason="needs TensorFlow and the TFOD API")


def small_config(folder: Path) -> Path:
    """The committed config at 64x64, batch 2: the same model, quick to train."""
    text = CONFIG.read_text()
    for old, new in [("height: 256 width: 256", "height: 64 width: 64"),
                     ("batch_size: 4", "batch_size: 2")]:
        assert old in text, old
        text = text.replace(old, new)
    path = folder / "pipeline.config"
    path.write_text(text)
    return path


def train(config: Path, data: Path, work: Path, steps: int) -> str:
    """Runs tools/train_shapes.py for `steps` steps in all; returns its output."""
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train_shapes.py"), "--pipeline_config",
         str(config), "--data", str(data), "--work", str(work), "--num_steps", str(steps),
         "--checkpoint_every", "1", "--threads", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.slow  # two ResNet-50 builds and traces: minutes on 2 cores
def test_faster_rcnn_trains_and_resumes(tmp_path: Path) -> None:
    data = tmp_path / "train"
    shapes.write_dataset(data, 4, seed=3, progress=False)
    config, work = small_config(tmp_path), tmp_path / "work"
    first = train(config, data, work, 2)
    assert "resumed" not in first
    again = train(config, data, work, 3)
    assert f"resumed from {work / 'train' / 'ckpt-2'} at step 2" in again
    log = [json.loads(line) for line in (work / "train_log.txt").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [0, 1, 2]  # step 2 once: no step was redone
    for entry in log:
        assert FASTER_RCNN_LOSSES <= entry.keys(), entry
        assert all(math.isfinite(entry[key]) for key in FASTER_RCNN_LOSSES), entry
    assert (work / "final" / "pipeline.config").is_file()
