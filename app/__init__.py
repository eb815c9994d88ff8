"""resviz: an interactive visualizer of residual networks."""

__version__ = "0.1.0"
