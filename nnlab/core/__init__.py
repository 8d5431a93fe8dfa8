"""What every stage imports, and nothing else: dvc.yaml lists this folder whole, so each
module here is one that every stage runs (tests/unit/project/test_architecture.py checks it).
Imports nothing above it (only the standard library, NumPy and pydantic):

    files.py        atomic writes, safe .npy/.npz/JSON reads with one-line errors, hashes
    errors.py       the errors a user can cause, each printed as one line
    layout.py       where the pipeline's files live (Layout), the names stages share, and
                    the user's cache for compiled code (numba's loops, JAX's steps)
    schema.py       the params base class, shared field types, the validated file (Params)
    activations.py  the activation names numpy_dnn and Keras share
    catalog.py      params.yaml's model names -> classifier and schema, every section's
                    schema (strings: nothing imported until asked)
    quiet.py        third-party C++ log lines (TensorFlow's banners) kept off the console
    stops.py        SIGTERM and SIGINT raised where Python can unwind from them
"""
