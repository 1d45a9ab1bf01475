#!/usr/bin/env bash
# Issue 15: every lab's best recipe over its seeds, beside the report's settings and a reference
# implementation (PyG's examples for Lab 4), each a sweep best_<task>_<variant>; then best.md, the
# "report | reference | ours" table that `common.report` puts at the top of REPORT.md. The recipes and
# their flags: common/best.py (ROWS). SCALE=smoke checks that every recipe runs (few epochs, two seeds);
# SCALE=full measures them.
source "$(dirname "$0")/lib/common.sh"
"$PYTHON" -m common.best --scale "$SCALE" --out "$SWEEPS_OUT/$SCALE" "${backend[@]}" "$@"
