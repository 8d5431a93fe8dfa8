"""MLflow plumbing, shared by the train and evaluate stages and the commands:

    mlflow_runs.py   where the store is, one run per trained model, tags, datasets, results
    store.py         the local SQLite store, made once under a lock and never half-made
    heartbeat.py     which runs still have a process behind them; ending the dead ones
    server_check.py  the tracking server answers and takes our credentials, or one line
"""
