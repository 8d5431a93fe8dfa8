"""The train stage's work, for every model family:

    train.py         fit one model (live, resumable), log it to MLflow, write models/<model>/
    checkpoints.py   the stage's checkpoint after each epoch, and the key that says whose it is
    stage_code.py    which files each stage runs, from the imports: the key's code, and the
                     code deps `make deps` writes into dvc.yaml
    live_metrics.py  each epoch's metrics sent to the MLflow run as it ends, off the training
                     thread; the Pacer both share
    sweep_hook.py    a sweep's trial, handed in through NNLAB_TRIAL: training never imports
                     nnlab/search/
    roll_call.py     before a training of several processes: process 0 waits for the others
                     and checks each has its commit, code, params and data
    joiner.py        `nnlab join`: a process other than 0 of such a training
"""
