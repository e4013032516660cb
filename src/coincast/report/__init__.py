"""Rendering: plots, HTML reports, terminal tables, run folders."""
