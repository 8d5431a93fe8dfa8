"""What each dvc.yaml stage does, as typed functions the stage modules call, one module per
stage so that each stage's dvc.yaml deps list only the code it runs:

    layout.py         where the outputs live (Layout) and the file names stages share
    data_steps.py     download, prepare, split
    train_step.py     train
    evaluate_step.py  evaluate
    report_step.py    report

Paths come in as arguments (Layout), so every step can be unit-tested on a temporary folder.
Import the module you need (`from nnlab.pipeline import train_step`): this package imports
nothing, so a stage loads only its own code.
"""
