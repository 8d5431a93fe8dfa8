"""logreg: scikit-learn's logistic regression on flattened pixels, the reference row of every
table:

    section.py     the `logreg` section's schema
    classifier.py  the ImageClassifier: fit, predict, save and load as plain .npz arrays
"""
