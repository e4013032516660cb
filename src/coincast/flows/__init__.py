"""The end-to-end flows shared by the command line and the Python API: run, backtest."""
