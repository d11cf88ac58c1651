"""Serving detectors with NVIDIA Triton Inference Server: the protocol clients speak
(interface.py), the model repository of export_triton.py (engine, Python preprocessing and
postprocessing, ensemble), the server of serve_triton.py (PyTriton), and the client of
infer.py / eval_coco.py --triton."""
