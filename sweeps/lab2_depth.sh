#!/usr/bin/env bash
# Report, Lab 2 §4 "网络深度": two extra 3x3 convs after each group's conv (3 per group) at lr 0.015 for 15
# epochs converge slowly; fewer double convs near the output (3,3,3,2,2,1) help -> overlaid loss
# curves and test top-1 against the framework's one conv per group.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab2_scale.sh
sweep lab2_depth lab2_cnn \
  --title "Lab 2: extra convs per group (lr 0.015)" --setting "$LAB2_SETTING" \
  --grid "convs_per_group=1|3|3,3,3,2,2,1" --seeds "$LAB2_SEEDS" \
  --metric test_top1 --table best_val_loss best_epoch --curves train_loss val_loss \
  -- "${LAB2_FLAGS[@]}" --epochs "$LAB2_EPOCHS" --lr 0.015
