"""The sweep runner: `python -m common.sweep LAB --grid ...` (see cli.py for the whole syntax).

grid.py: grid syntax and points; runner.py: running and resuming points; ray_backend.py: points as Ray
tasks (--backend ray); tables.py: tables and figures."""
