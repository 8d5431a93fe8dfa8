"""Handing a trained model on, through MLflow's registry:

    promote.py         `nnlab promote`: a run's model becomes a registered version; @champion
                       moves only on better validation accuracy
    predict.py         `nnlab predict`: class probabilities for image files, from a workspace
                       model, a run or `models:/NAME@alias`
    serve.py           `nnlab serve`: MLflow's scoring server on the serving pyfunc, errors in
                       one line
    serving_pyfunc.py  the served pyfunc: image files or pixels in, classes and
                       probabilities out
"""
