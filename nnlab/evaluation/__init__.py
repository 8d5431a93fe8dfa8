"""Scoring and comparing trained models:

    evaluate.py   the evaluate stage's work: metrics, per-class scores, plots, MLflow results
    metrics.py    accuracy, loss, macro F1, per-class scores and confusion counts
    plots.py      the PNGs (confusion matrix, learning curves, misclassified, summary)
    bars.py       each prediction's probabilities as bars beside its image (evaluate, predict)
    data_plots.py the data_report stage: sample images per class, class counts per set
    figures.py    what every PNG shares: headless matplotlib, one DPI, atomic same-bytes saves
    baselines.py  scikit-learn's classical baselines on the same split, and their params
    report.py     reports/summary.md, summary.csv and summary.png
"""
