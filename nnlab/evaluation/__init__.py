"""Scoring and comparing trained models:

    evaluate.py   the evaluate stage's work: metrics, per-class scores, plots, MLflow results
    metrics.py    accuracy, loss, macro F1, per-class scores and confusion counts
    uncertainty.py 95% intervals (Wilson, bootstrap), McNemar, Holm, seed spreads (scipy)
    outcomes.py   reports/<model>/predictions.csv: each image's result, for paired tests
    comparison.py every pair of models on the same images; the best by validation and its ties
    repeats.py    `nnlab repeat`'s spread over seeds, paired comparison and verdict lines
    plots.py      the PNGs (confusion matrix, learning curves, misclassified, summary)
    bars.py       each prediction's probabilities as bars beside its image (evaluate, predict)
    data_plots.py the data_report stage: sample images per class, class counts per set
    figures.py    what every PNG shares: headless matplotlib, one DPI, atomic same-bytes saves
    baselines.py  scikit-learn's classical baselines on the same split, and their params
    summary.py    the report stage: reports/summary.md, .json, .csv and .png
"""
