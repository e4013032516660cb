"""Scores and statistics of a forecast table: metrics, tests, intervals, comparisons."""
