"""keras_mlp and cnn, the Keras models, on Keras 3's TensorFlow backend (the default) or JAX:

    spec.py        the names params.yaml may use (backends, optimizers, inits, activations)
    section.py     the keras_mlp and cnn sections' schemas, and the cnn's `deep` preset
    builders.py    keras.Sequential builders for both models
    inputs.py      the batches fit reads: tf.data on TensorFlow, NumPy batches elsewhere
    classifier.py  KerasMlpClassifier and CnnClassifier: fit, predict, save, load
    placement.py   seeds and determinism, mixed precision, data parallelism over the devices
    inference.py   the inference layers through the compiled predict function (predict, serve)
    backend.py     Keras on its backend, imported once with the settings every module needs;
                   which devices it sees
    training_state.py  a fit's whole state after each epoch, for the train stage's checkpoint
    cluster.py     one training over several processes, on JAX's distributed runtime

The modules that build, fit or run a model import Keras (and TensorFlow, on its backend);
importing this package does not. A model on JAX never imports TensorFlow.
"""
