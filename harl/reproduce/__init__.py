"""Reproduce the papers' experiments: `python -m harl.reproduce <suite>` trains a suite's tuned
presets x seeds (skipping finished runs, continuing interrupted ones) and writes a report with
the papers' numbers beside ours. Suites: harl/reproduce/suites/*.yaml."""
