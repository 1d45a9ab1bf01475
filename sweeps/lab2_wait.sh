#!/usr/bin/env bash
# Report, Lab 2 §1 "迭代次数的影响": epochs and wait together decide when training stops;
# patience (the report's wait) 1 vs 5 -> overlaid loss curves and the test top-1 of each.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_wait lab2_cnn \
  --title "Lab 2: early stopping with patience (the report's wait) 1 vs 5" --setting "$LAB2_SETTING" \
  --grid patience=1,5 --seeds "$LAB2_SEEDS" --metric test_top1 --table best_val_loss best_epoch epochs_run \
  --curves train_loss val_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_LONG_EPOCHS"
