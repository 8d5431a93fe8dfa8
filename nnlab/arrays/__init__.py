"""Images and labels as arrays, for every stage that reads or writes them (all but report):

    contract.py     the data contract: uint8 images (N, H, W, C), int64 labels, classes.json
    chunks.py       work in chunks sized by a memory budget (prediction, evaluation)

Imports only nnlab/core/.
"""
