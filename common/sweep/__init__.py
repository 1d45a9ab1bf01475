"""The sweep runner: `python -m common.sweep LAB --grid ...` (see cli.py for the whole syntax).

grid.py: grid syntax and points; runner.py: running and resuming points; tables.py: tables and figures."""
