"""Build side: torch model definitions, export to ONNX, weights and training (needs torch)."""
