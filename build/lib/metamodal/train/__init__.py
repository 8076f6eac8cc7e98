"""Training the model zoo on Ray Train: layered config, BPR sampling, the worker loop with early
stopping and checkpoints, and the driver that runs it and reports on test."""
