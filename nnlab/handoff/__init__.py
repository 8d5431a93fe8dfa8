"""Handing a trained model on, through MLflow's registry:

    promotion.py       `nnlab promote`: a run's model becomes a registered version; @champion
                       moves only on better validation accuracy
    prediction.py      `nnlab predict`: class probabilities for image files, from a workspace
                       model, a run or `models:/NAME@alias`
    scoring_server.py  `nnlab serve`: MLflow's scoring server on the serving pyfunc, errors in
                       one line, from one or --workers N processes
    limits.py          what a request and a connection may cost: the limits, their defaults
    request_guard.py   what a request may cost, checked before MLflow decodes it: bytes
                       (413 unread), body type (415), images (400)
    connections.py     connections capped, closed when idle or slow; a repeated error logged
                       once with a count
    batching.py        concurrent requests' images through the model in one call
    onnx_copy.py       `nnlab export`: a model as ONNX, checked in onnxruntime, logged to its run
    onnx_export/       the ONNX exporter of each model family
    serving_pyfunc.py  the served pyfunc: image files or pixels in, classes and
                       probabilities out
"""
