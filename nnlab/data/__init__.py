"""Datasets: each source turns its raw files into the data contract (nnlab/arrays/contract.py).

    section.py       the `data` section's schema and the dataset names -> source modules
    ingest.py        the download and prepare stages' work, and the Source protocol
    split.py         the split stage's work (it loads no source)
    fetch.py         downloads with pinned checksums, mirrors, resume and safe extraction
    digits.py        scikit-learn's bundled 8x8 digits (the offline default)
    idx.py           MNIST and Fashion-MNIST (IDX files)
    cifar10.py       CIFAR-10 (its binary version: nothing is unpickled)
    image_folder.py  a folder of class subfolders of images
    planar.py        2-D two-class points (flower, moons)
    points.py        2-D points stored as images (planar's encoding, read back by its plot)

A stage imports only the source it reads: a change to cifar10.py reruns download and
prepare, nothing else.
"""
