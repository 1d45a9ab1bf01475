#!/usr/bin/env bash
# Report, Lab 1 §3-§4 and the final result: long runs of one hidden layer (depth 1), repeated over
# seeds, as mean ± std of the test MSE: the report saw large seed-to-seed variance (most runs near
# 1e-3, some stuck near 0.1). Point flags override the fixed ones (lr 0.1 for width 500).
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  smoke) scale=100 seeds=3 setting="1/100 of the report's epochs, 3 seeds" ;;
  full)  scale=1   seeds=5 setting="the report's epochs, 5 seeds" ;;
esac
sweep lab1_long lab1_fnn \
  --title "Lab 1: long runs of one hidden layer, mean ± std over seeds" --setting "$setting" \
  --grid activation=relu width=75 epochs=$((300000 / scale)) \
  --grid activation=relu width=125,100 epochs=$((100000 / scale)) \
  --grid activation=relu width=500 epochs=$((100000 / scale)) lr=0.1 \
  --grid activation=sigmoid width=75,100 epochs=$((100000 / scale)) \
  --seeds $seeds --metric test_mse --table best_val_mse best_epoch --log-color \
  -- --depth 1 --lr 0.01
