#!/usr/bin/env bash
# Report, Lab 4 §1-2: all 8 combinations of self-loop, pair-norm and drop-edge (T/F) for each
# dataset-task pair, with prelu and with tanh, 2 layers -> the report's two tables of the best
# validation score (table_regularizers_<activation>.md/.csv; best in bold, second in italics).
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  smoke) datasets=cora epochs=100 setting="embedded Cora only, 100 epochs, random 60/20/20 split, drop-edge 0.2" ;;
  full)  datasets=cora,citeseer,ppi epochs=500 setting="random 60/20/20 split, drop-edge 0.2 (no rate stated)" ;;
esac
sweep lab4_regularizers lab4_gcn \
  --title "Lab 4: self-loop, pair-norm and drop-edge for each dataset and task" --setting "$setting" \
  --grid dataset=$datasets task=node,link self_loop=false,true pair_norm=false,true drop_edge=0,0.2 \
         activation=prelu,tanh \
  --metric best_val_score --table test_score \
  -- --epochs $epochs --layers 2
"$PYTHON" -m lab4_gcn.tables "$SWEEPS_OUT/$SCALE/lab4_regularizers"
