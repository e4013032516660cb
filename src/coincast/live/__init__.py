"""Live forecasting: the replay exchange, the model registry and the per-stream service loop.

Layer: beside flows/, below cli/; imports data/, models/, evaluation/ and core, never cli/.
"""
