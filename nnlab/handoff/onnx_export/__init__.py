"""Every model as ONNX (`nnlab export`, nnlab/handoff/onnx_copy.py): one exporter per family,
each file taking uint8 `images` (N, H, W, C) and giving `probabilities` (N, n_classes).

    graph.py       what every exported model shares: the uint8 input, the output, a graph
                   builder, and the uint8 input put in front of another exporter's graph
    numpy_nets.py  numpy_dnn and numpy_cnn, built layer by layer from their weights
    keras_nets.py  keras_mlp and cnn through Keras's own exporter (tf2onnx)
    logreg.py      logreg through skl2onnx

Here, not in the model families' folders: training never runs them, so a change to an
exporter reruns no stage.
"""
