"""logreg: scikit-learn's logistic regression on flattened pixels, the reference row of every
table (classifier.py; its params section: params.py)."""
