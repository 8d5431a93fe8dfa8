"""One module per dvc.yaml stage: `python -m stages.<name> [model]`. Thin by design."""
