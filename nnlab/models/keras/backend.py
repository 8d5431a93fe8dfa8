"""Keras on the TensorFlow backend, imported once with the settings every Keras module here
needs: import `keras` and `tf` from this module, never directly."""

from __future__ import annotations

import os

# Hide TensorFlow's C++ INFO/WARNING logs (lines printed before absl starts still show).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

# No Keras progress bar anywhere (MLflow's Keras flavor calls `model.predict()` with its
# default verbosity when it logs a model): the stages print their own epoch lines
# (nnlab/core/progress.py). Keras then sends those messages to Python logging at INFO level.
keras.utils.disable_interactive_logging()

__all__ = ["keras", "tf"]
