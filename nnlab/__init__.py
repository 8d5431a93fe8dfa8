"""nnlab: reproducible image-classification experiments (DVC pipeline + MLflow tracking)."""

__version__ = "0.1.0"
