"""keras_mlp and cnn, the Keras models (TensorFlow backend):

    spec.py        the names params.yaml may use (optimizers, inits, activations): no TensorFlow
    params.py      the keras_mlp and cnn sections' schemas, and the cnn's `deep` preset
    builders.py    keras.Sequential builders for both models
    inputs.py      the tf.data pipelines fit and evaluation read
    classifier.py  KerasMlpClassifier and CnnClassifier: fit, predict, save, load
    inference.py   the inference layers through the compiled predict function (predict, serve)
    backend.py     Keras on TensorFlow, imported once with the settings every module needs
    training_state.py  a fit's whole state after each epoch, for the train stage's checkpoint

The modules that build, fit or run a model import TensorFlow; importing this package does
not.
"""
