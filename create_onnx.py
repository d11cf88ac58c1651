"""Converts a TFOD SavedModel into an ONNX graph that TensorRT 8.6, 10 and 11 can build.

    python create_onnx.py --pipeline_config pipeline.config --saved_model saved_model \\
        --onnx model.onnx [--batch_size 1] [--input_format NHWC|NCHW] [--validate IMAGES_DIR]

TFOD's preprocessor becomes a static input (pixels 0..255, RGB) followed by the feature
extractor's normalisation; TFOD's post-processor becomes EfficientNMS_TRT decoding the boxes
against the anchors. What inference needs later is stored in the ONNX metadata. SSD is converted
here, Faster R-CNN (two stages, CropAndResize between them) in faster_rcnn.py.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("create_onnx")
DEFAULT_OPSET = 17  # the newest opset TensorRT 8.6's parser reads


@dataclass
class ConversionOptions:
    """Overrides of the pipeline config and output choices (None keeps the config's value)."""

    batch_size: int = 1
    input_format: str = "NHWC"
    score_threshold: float | None = None
    iou_threshold: float | None = None
    max_detections: int | None = None
    opset: int = DEFAULT_OPSET
    debug: tuple[str, ...] = ()
    tf2onnx_path: Path | None = None
    # the `true_image_shape` input (None: present for keep_aspect_ratio models)
    true_image_shape: bool | None = None


def check_thresholds(score: float, iou: float, max_detections: int) -> None:
    """Refuses values EfficientNMS_TRT cannot honour (never silently changed)."""
    if not 0.0 <= score <= 1.0 or math.isnan(score):
        raise ValueError(f"score threshold {score} must lie in [0, 1]")
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"IoU threshold {iou} must lie in (0, 1]")
    if max_detections < 1:
        raise ValueError(f"max detections {max_detections} must be at least 1")


def nms_settings(config, options: ConversionOptions) -> tuple[float, float, int]:
    """(score threshold, IoU threshold, detections per image): the options over the config's."""
    score = config.score_threshold if options.score_threshold is None else options.score_threshold
    iou = config.iou_threshold if options.iou_threshold is None else options.iou_threshold
    top_k = config.max_total_detections if options.max_detections is None else (
        options.max_detections)
    check_thresholds(score, iou, top_k)
    return score, iou, top_k


def wants_true_image_shape(config, options: ConversionOptions) -> bool:
    """Whether the graph gets the `true_image_shape` input: TFOD clips the detections (Faster
    R-CNN also the proposals) to the unpadded image given by its true_image_shapes. By default
    for keep_aspect_ratio (padded) models; fixed_shape images fill the whole input."""
    if options.true_image_shape is None:
        return config.preprocessor.kind == "keep_aspect_ratio"
    return options.true_image_shape


def ssd_change_coordinate_frame(config) -> bool:
    """SSD's batch_non_max_suppression.change_coordinate_frame (TFOD's default: true): whether
    TFOD normalises its detections to the clip window (the true image) or leaves them
    normalised to the padded input."""
    from pipeline_config import parse_text_proto

    root = parse_text_proto(Path(config.path).read_text(errors="replace"), str(config.path))
    value = root.get1("model.ssd.post_processing.batch_non_max_suppression."
                      "change_coordinate_frame", True)
    return value not in (False, "false", "False", 0)


def convert(config, saved_model: Path, options: ConversionOptions):
    """SavedModel + ModelConfig -> onnx.ModelProto with EfficientNMS_TRT and metadata."""
    if config.meta_arch == "faster_rcnn":
        import faster_rcnn

        return faster_rcnn.convert(config, saved_model, options)
    return convert_ssd(config, saved_model, options)


def convert_ssd(config, saved_model: Path, options: ConversionOptions):
    """SSD: network -> normalisation input, score slicing, EfficientNMS_TRT on the anchors;
    with the `true_image_shape` input, TFOD's clip window as onnx_utils.clip_to_true_image."""
    import onnx
    import onnx_graphsurgeon as gs

    import onnx_utils as ou
    import tf_graph

    score, iou, top_k = nms_settings(config, options)
    pre = config.preprocessor
    net, _ = tf_graph.convert_network(
        saved_model, f"{saved_model} with {config.path}", options.batch_size, pre.height,
        pre.width, options.opset,
    )
    if options.tf2onnx_path:
        ou.save_model(net.onnx_model, options.tf2onnx_path)
    graph = gs.import_onnx(onnx.shape_inference.infer_shapes(net.onnx_model))
    tensors = graph.tensors()
    logits, encodings = tensors[net.logits_name], tensors[net.boxes_name]
    batch, num_anchors = options.batch_size, len(net.anchors)
    check_head_shapes(config, logits.shape, encodings.shape, num_anchors)

    ou.replace_input_with_normalization(
        graph, tensors[net.input_name], batch, pre.height, pre.width, options.input_format,
        *config.normalization,
    )
    scores = logits
    if logits.shape[-1] == config.num_classes + 1:  # drop TFOD's background column
        scores = ou.slice_last_axis(graph, logits, 1, config.num_classes + 1, "class_logits",
                                    [batch, num_anchors, config.num_classes])
    deltas = ou.box_deltas(graph, encodings, [batch, num_anchors, 4], config.box_scales)
    anchors = ou.const("anchors", ou.anchors_center_size(net.anchors))
    true_shape = ou.true_image_shape_input(batch) if wants_true_image_shape(
        config, options) else None
    # With a clip window, TFOD caps the total after dropping the boxes the clip emptied: the
    # plugin then keeps every candidate it has (its pre-NMS pool) for the cap after the prune.
    candidates = top_k if true_shape is None else max(
        top_k, min(num_anchors * config.num_classes, ou.NMS_CANDIDATE_POOL))
    outputs = ou.add_efficient_nms(
        graph, deltas, scores, anchors, batch, score_threshold=score, iou_threshold=iou,
        max_detections=candidates, score_activation=True,
    )
    if score < ou.NMS_SAFE_SCORE_FLOOR:
        outputs = ou.guard_low_threshold(graph, outputs, score)
    to_true_image = False
    if true_shape is not None:
        graph.inputs.append(true_shape)
        to_true_image = ssd_change_coordinate_frame(config)
        outputs = ou.clip_to_true_image(
            graph, outputs, true_shape, (pre.height, pre.width), config.num_classes,
            min(config.max_detections_per_class, candidates), top_k, to_true_image)
    outputs[1] = ou.clip_boxes(graph, outputs[1])
    meta = metadata(config, saved_model, options, score, iou, top_k, true_shape is not None)
    if true_shape is not None:
        meta["box_frame"] = "true_image" if to_true_image else "input"
        meta["max_detections_per_class"] = config.max_detections_per_class
    return finish(graph, outputs, options, meta)


def metadata(config, saved_model: Path, options: ConversionOptions, score: float, iou: float,
             top_k: int, true_image_shape: bool = False) -> dict:
    """What inference needs later, stored in the ONNX file (see onnx_utils.set_metadata).
    `true_image_shape`: the graph takes that input, and its detection boxes are normalised to
    the true (unpadded) image instead of the network input."""
    import onnx_utils as ou

    scale, offset = config.normalization
    return {
        "true_image_shape": ou.TRUE_IMAGE_SHAPE if true_image_shape else None,
        "box_frame": "true_image" if true_image_shape else "input",
        "format_version": 1,
        "meta_arch": config.meta_arch,
        "feature_extractor": config.feature_extractor,
        "num_classes": config.num_classes,
        "preprocessor": config.preprocessor.to_dict(),
        "input_format": options.input_format,
        "batch_size": options.batch_size,
        "normalization": {"scale": list(scale), "offset": list(offset)},
        "score_threshold": score,
        "iou_threshold": iou,
        "max_detections": top_k,
        "class_offset": 0,
        "source": {"pipeline_config": str(config.path), "saved_model": str(saved_model)},
    }


def finish(graph, outputs: list, options: ConversionOptions, meta: dict):
    """Sets the outputs (plus --debug ones), exports, stamps opset and metadata, checks."""
    import onnx_graphsurgeon as gs

    import onnx_utils as ou

    graph.outputs = outputs + debug_outputs(graph, options.debug)
    graph.cleanup().toposort()
    model = gs.export_onnx(graph)
    model.opset_import[0].version = options.opset
    ou.set_metadata(model, meta)
    ou.check_model(model)
    return model


def check_head_shapes(config, logits_shape, encodings_shape, num_anchors: int) -> None:
    """Catches a pipeline config that does not belong to the SavedModel."""
    columns = logits_shape[-1]
    if columns not in (config.num_classes, config.num_classes + 1):
        raise ValueError(
            f"{config.path}: num_classes is {config.num_classes}, but the SavedModel predicts "
            f"{columns} class columns; use the pipeline.config exported with this SavedModel"
        )
    if logits_shape[1] != num_anchors or encodings_shape[1] != num_anchors:
        raise ValueError(
            f"{config.path}: at {config.preprocessor.height}x{config.preprocessor.width} the "
            f"model has {num_anchors} anchors but its heads give {logits_shape[1]} predictions; "
            "the config's input size does not match the SavedModel"
        )


def debug_outputs(graph, names: tuple[str, ...]) -> list:
    """Extra graph outputs for `--debug NODE` (a node name or a tensor name)."""
    tensors = graph.tensors()
    extra = []
    for name in names:
        node = next((n for n in graph.nodes if n.name == name), None)
        found = list(node.outputs) if node else ([tensors[name]] if name in tensors else [])
        if not found:
            raise ValueError(f"--debug {name}: no such node or tensor in the converted graph")
        extra.extend(found)
    return extra


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Convert a TFOD SavedModel to ONNX with EfficientNMS_TRT for TensorRT.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-p", "--pipeline_config", required=True, type=Path,
                        help="the pipeline.config exported with the SavedModel")
    parser.add_argument("-m", "--saved_model", required=True, type=Path,
                        help="the exported saved_model folder (input_type float_image_tensor)")
    parser.add_argument("-o", "--onnx", required=True, type=Path, help="the ONNX file to write")
    parser.add_argument("-b", "--batch_size", type=int, default=1, help="static batch size")
    parser.add_argument("--input_format", choices=["NHWC", "NCHW"], default="NHWC")
    parser.add_argument("-t", "--score_threshold", type=float,
                        help="NMS score threshold (default: the config's)")
    parser.add_argument("-u", "--iou_threshold", type=float,
                        help="NMS IoU threshold (default: the config's)")
    parser.add_argument("-d", "--max_detections", type=int,
                        help="detections per image (default: the config's max_total_detections)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument("--tf2onnx", type=Path, metavar="PATH",
                        help="also keep the raw tf2onnx conversion of the network here")
    parser.add_argument("--debug", action="append", default=[], metavar="NODE",
                        help="add a node's outputs (or a tensor) as extra graph outputs")
    parser.add_argument("--no_true_image_shape", action="store_true",
                        help="keep_aspect_ratio models: no true_image_shape input; the whole "
                        "padded input counts as the image (TFOD differs near the padding)")
    parser.add_argument("--validate", type=Path, metavar="IMAGES",
                        help="compare the SavedModel and the new ONNX on these images (CPU)")
    parser.add_argument("--validate_images", type=int, default=16,
                        help="how many images --validate uses")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")
    if not 11 <= args.opset <= 21:  # Clip and Slice take their bounds as inputs from 11
        parser.error("--opset must lie in 11..21 (TensorRT 8.6 reads up to 17)")
    return args


def check_paths(args: argparse.Namespace) -> None:
    """Missing inputs and unwritable outputs, before any slow work starts."""
    if not args.pipeline_config.exists():
        raise FileNotFoundError(f"{args.pipeline_config}: pipeline config not found")
    if not (args.saved_model / "saved_model.pb").is_file():
        raise FileNotFoundError(
            f"{args.saved_model}: no saved_model.pb there; pass the exported 'saved_model' folder"
        )
    for out in [args.onnx] + ([args.tf2onnx] if args.tf2onnx else []):
        parent = out.parent
        if out.is_dir():
            raise IsADirectoryError(f"{out}: is a folder; give a file name for the ONNX model")
        if not parent.is_dir():
            raise FileNotFoundError(f"{out}: the folder {parent} does not exist")
        if not os.access(parent, os.W_OK):
            raise PermissionError(f"{out}: the folder {parent} is not writable")
    if args.validate and not args.validate.exists():
        raise FileNotFoundError(f"{args.validate}: no such image file or folder")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    from pipeline_config import ConfigError, load_pipeline_config
    from tf_graph import ConversionError

    try:
        check_paths(args)
        config = load_pipeline_config(args.pipeline_config)
        options = ConversionOptions(
            batch_size=args.batch_size, input_format=args.input_format,
            score_threshold=args.score_threshold, iou_threshold=args.iou_threshold,
            max_detections=args.max_detections, opset=args.opset, debug=tuple(args.debug),
            tf2onnx_path=args.tf2onnx,
            true_image_shape=False if args.no_true_image_shape else None,
        )
        if args.score_threshold is not None or args.iou_threshold is not None:
            check_thresholds(
                config.score_threshold if args.score_threshold is None else args.score_threshold,
                config.iou_threshold if args.iou_threshold is None else args.iou_threshold, 1,
            )
        start = time.perf_counter()
        model = convert(config, args.saved_model, options)
        import onnx_utils

        onnx_utils.save_model(model, args.onnx)
        log.info("wrote %s in %.1f s", args.onnx, time.perf_counter() - start)
        if args.validate:
            import parity

            report = parity.validate(
                args.saved_model, args.onnx, args.validate, args.validate_images
            )
            print(report.summary())
            return 0 if report.passed else 1
    except (ConfigError, ConversionError, OSError, ValueError) as exc:
        print(f"create_onnx.py: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
