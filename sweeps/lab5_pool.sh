#!/usr/bin/env bash
# Report, Lab 5 §4: average against max pooling, from the content and from white noise.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab5_scale.sh
sweep lab5_pool lab5_style \
  --title "Lab 5: average and max pooling" \
  --setting "$LAB5_SETTING" --grid pool=avg,max init=content \
  --grid pool=avg,max init=$LAB5_NOISE lr=$LAB5_NOISE_LR "${LAB5_FIGURES[@]}" \
  -- "${LAB5_FLAGS[@]}" --lr "$LAB5_FINE_LR" --content-layers conv_5:1 \
     --style-layers conv_1:1000,conv_2:1000,conv_3:1000,conv_4:1000,conv_5:1000
