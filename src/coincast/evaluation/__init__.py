"""Metrics, significance tests, plots and reports; all read the forecast table."""
