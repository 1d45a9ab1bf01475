"""The sweep runner: `python -m common.sweep LAB --grid ...` (see __main__.py for the whole syntax).

grid.py: grid syntax and points; runner.py: running and resuming points; tables.py: tables and figures."""
