#!/usr/bin/env bash
# Report, Lab 2 §4 "网络深度": more 3x3 convs per group (1, 2, 3) make the net deeper and slower
# to converge -> overlaid loss curves and test top-1.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_depth lab2_cnn \
  --title "Lab 2: extra convs per group" \
  --grid convs_per_group=1,2,3 --metric test_top1 --table best_val_loss best_epoch \
  --curves train_loss val_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_EPOCHS"
