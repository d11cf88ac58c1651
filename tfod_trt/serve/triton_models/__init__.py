"""The repository's Python models (Triton's Python backend): export_triton.py copies each as a
model's ``model.py``, beside the package files it imports. They run in the server only, where
``triton_python_backend_utils`` exists."""
