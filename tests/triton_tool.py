"""What the Triton tests run in the serving environment (tritonclient is there, not in the
main one); each command prints its answer as JSON:

    configs REPO                  every config.pbtxt parsed by Triton's own ModelConfig schema
    detect URL MODEL IMAGE...     one request per --request group of images, through the
                                  ensemble MODEL (HTTP): each image's detections (or why it
                                  could not be read), or the request's error; --together:
                                  all requests at once
    environment                   NumPy's version, and whether the package pulled TensorFlow in
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import tritonclient.http as httpclient
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

from tfod_trt.serve.interface import IMAGES, RESULTS, unpack_answer


def parse_configs(repo: Path) -> dict:
    parsed = {}
    for path in sorted(repo.glob("*/config.pbtxt")):
        config = text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())
        parsed[path.parent.name] = json_format.MessageToDict(config)
    return parsed


def ask(url: str, model: str, images: list[str]) -> dict:
    """One request: each image's answer, or the request's error."""
    client = httpclient.InferenceServerClient(url)
    data = np.array([[Path(image).read_bytes()] for image in images], dtype=object)
    tensor = httpclient.InferInput(IMAGES, list(data.shape), "BYTES")
    tensor.set_data_from_numpy(data)
    try:
        result = client.infer(model, [tensor])
    except InferenceServerException as err:
        return {"error": err.message()}
    finally:
        client.close()
    per_image = unpack_answer({name: result.as_numpy(name) for name in RESULTS})
    return {"images": [{"boxes": image.boxes.tolist(), "scores": image.scores.tolist(),
                        "classes": image.classes.tolist(), "labels": image.labels,
                        "error": image.error} for image in per_image]}


def detect(url: str, model: str, requests: list[list[str]], together: bool) -> list[dict]:
    """The requests one after the other, or all at once (``together``: a thread each)."""
    if not together:
        return [ask(url, model, images) for images in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda images: ask(url, model, images), requests))


def environment() -> dict:
    import tfod_trt.__main__  # noqa: F401 (every command, and so most of the package)
    import tfod_trt.serve.repository  # noqa: F401

    return {"numpy": np.__version__, "tensorflow_imported": "tensorflow" in sys.modules}


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("configs").add_argument("repo", type=Path)
    detect_args = commands.add_parser("detect")
    detect_args.add_argument("url")
    detect_args.add_argument("model")
    detect_args.add_argument("--request", action="append", nargs="+", required=True)
    detect_args.add_argument("--together", action="store_true")
    commands.add_parser("environment")
    args = parser.parse_args()
    if args.command == "configs":
        answer = parse_configs(args.repo)
    elif args.command == "detect":
        answer = detect(args.url, args.model, args.request, args.together)
    else:
        answer = environment()
    print(json.dumps(answer))


if __name__ == "__main__":
    main()
