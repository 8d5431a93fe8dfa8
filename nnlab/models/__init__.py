"""The models, one folder per family:

    base.py          the contract every model follows (ImageClassifier), new_model(name,
                     params, seed), load_model(folder), load_predictor (inference)
    portable.py      inference of the models saved as arrays, in NumPy alone: what nnlab runs,
                     and the code of their logged MLflow model (imports nothing of nnlab)
    logged_model.py  a trained model in MLflow: how it is logged
    divergence.py    the cross-entropy every model reports, and the one divergence rule
    progress.py      the console's epoch lines: a bar in a terminal, a few lines in a log
    numpy/           numpy_dnn and numpy_cnn, from scratch in NumPy: layers, conv layers,
                     losses, optimizers, kernels, training loop
    keras/           keras_mlp and cnn
    logreg/         scikit-learn's logistic regression, the reference row

A family's folder holds its params section's schema (section.py), its network or builder,
its training and its save/load (its ONNX exporter is in nnlab/handoff/onnx_export/). A stage
imports only the family it runs.
"""
