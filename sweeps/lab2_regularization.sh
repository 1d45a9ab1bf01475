#!/usr/bin/env bash
# Report, Lab 2 §3 "正则化": the framework offered normalisation (batch norm) in the conv layers and in
# the residual blocks; on and off in each -> test top-1 per combination and overlaid validation-loss
# curves. The report: without it the net barely converges, and the conv layers need it.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_regularization lab2_cnn \
  --title "Lab 2: batch norm in the conv layers and in the residual blocks" --setting "$LAB2_SETTING" \
  --grid norm=batch,none block_norm=batch,none --seeds "$LAB2_SEEDS" \
  --metric test_top1 --table best_val_loss best_epoch --curves val_loss train_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_EPOCHS"
