#!/usr/bin/env bash
# Report, Lab 2 §3 "正则化": batch normalisation and dropout on vs off in the conv layers and the
# residual blocks -> test top-1 per combination and overlaid validation-loss curves.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_regularization lab2_cnn \
  --title "Lab 2: batch norm and dropout on vs off" \
  --grid norm=batch,none dropout=0,0.2 --metric test_top1 --table best_val_loss best_epoch \
  --curves val_loss train_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_EPOCHS"
