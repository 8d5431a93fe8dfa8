"""The activation names that numpy_dnn and the Keras models share, with leaky ReLU's slope:
the same params train the same kind of network in both frameworks."""

ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid")  # params `activation`
LEAKY_RELU_SLOPE = 0.01  # the usual choice (Keras's own default is 0.3)
