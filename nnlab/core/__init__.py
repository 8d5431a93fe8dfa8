"""What every stage and model shares. Imports nothing above it (only the standard library,
NumPy and pydantic):

    contract.py     the data contract: uint8 images (N, H, W, C), int64 labels, classes.json
    files.py        atomic writes, safe .npy/.npz/JSON reads with one-line errors, hashes
    errors.py       the errors a user can cause, each printed as one line
    layout.py       where the pipeline's outputs live (Layout), the names stages share, and
                    the user's cache for compiled code (numba's loops, JAX's steps)
    schema.py       the params base class, shared field types, the validated file (Params)
    loss.py         the cross-entropy every model reports, and the divergence rule
    activations.py  the activation names numpy_dnn and Keras share
    points.py       2-D points stored as images (the planar dataset's encoding)
    chunks.py       work in chunks sized by a memory budget (prediction, evaluation)
    progress.py     the console's epoch lines: a bar in a terminal, a few lines in a log
    quiet.py        third-party C++ log lines (TensorFlow's banners) kept off the console
    stops.py        SIGTERM and SIGINT raised where Python can unwind from them
    ports.py        a server's port checked before it starts (nnlab serve, nnlab ui)
"""
