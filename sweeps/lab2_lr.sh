#!/usr/bin/env bash
# Report, Lab 2 §2 "学习率与 lrd": lr 0.003 without learning-rate decay (wait 2) against the
# default lr with its per-epoch decay -> overlaid loss curves, best validation loss and its epoch.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_lr lab2_cnn \
  --title "Lab 2: lr 0.003 without lrd vs the default lr with lrd" --setting "$LAB2_SETTING" \
  --grid lr=0.003 lrd=1 patience=2 --grid lr=0.05 lrd=0.8 --seeds "$LAB2_SEEDS" \
  --metric best_val_loss --table best_epoch test_top1 \
  --curves train_loss val_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_EPOCHS"
