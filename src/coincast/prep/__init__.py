"""Preparing model inputs: indicators, input columns, windows."""
