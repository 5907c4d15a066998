"""Inference engines for the backbone: names (torch-free, read by the settings), runtimes, export.

  names      ENGINE_NAMES, AUTO_ENGINE, EngineError, check_engine_name (no torch import)
  runtimes   TorchEngine, OnnxEngine, OpenVinoEngine: pixels (B, 3, S, S) -> features (B, D)
  build      the cached ONNX export and build_engine(), which picks, checks and falls back
"""
