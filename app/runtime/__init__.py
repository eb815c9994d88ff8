"""Serve side: ONNX Runtime and numpy only; nothing here imports torch."""
