#!/usr/bin/env bash
# Report, Lab 5 §5: the start image -- content and blends A*content + (1-A)*style
# (blend:1 is the content) -> steps to converge and final loss.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab5_scale.sh
sweep lab5_init lab5_style \
  --title "Lab 5: initialisation" \
  --setting "$LAB5_SETTING" --grid init=content,blend:0.5,blend:0.3,blend:0.1 "${LAB5_FIGURES[@]}" \
  -- "${LAB5_FLAGS[@]}" --lr "$LAB5_FINE_LR" --content-layers conv_5:1 \
     --style-layers conv_1:1000,conv_2:1000,conv_3:1000,conv_4:1000,conv_5:1000
