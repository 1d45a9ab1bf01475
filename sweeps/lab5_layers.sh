#!/usr/bin/env bash
# Report, Lab 5 results §1-2: the content layer (style conv_1..5 at 500) and six style-layer weightings
# (content conv_5) -> result grids, loss tables and total-loss curves.
source "$(dirname "$0")/lib/common.sh"
source sweeps/lib/lab5_scale.sh
case "$LAB5_BACKBONE" in  # the first conv after 0, 1, 2, 3 and 4 poolings, and the last conv
  vgg19) content=conv_1:1,conv_3:1,conv_5:1,conv_9:1,conv_13:1,conv_16:1 ;;
  vgg16) content=conv_1:1,conv_3:1,conv_5:1,conv_8:1,conv_11:1,conv_13:1 ;;
esac
sweep lab5_content_layers lab5_style \
  --title "Lab 5: content layer" \
  --setting "$LAB5_SETTING" --grid content_layers=$content "${LAB5_FIGURES[@]}" \
  -- "${LAB5_FLAGS[@]}" --lr "$LAB5_LAYERS_LR" --style-layers conv_1:500,conv_2:500,conv_3:500,conv_4:500,conv_5:500
sweep lab5_style_layers lab5_style \
  --title "Lab 5: style layers and weights" --setting "$LAB5_SETTING" \
  --grid "style_layers=conv_2:500,conv_3:500,conv_4:500,conv_5:500,conv_6:500|\
conv_3:500,conv_4:500,conv_5:500,conv_6:500,conv_7:500|\
conv_4:500,conv_5:500,conv_6:500,conv_7:500,conv_8:500|\
conv_1:200,conv_2:400,conv_3:600,conv_4:800,conv_5:1000|\
conv_1:1000,conv_2:800,conv_3:600,conv_4:400,conv_5:200|\
conv_1:300,conv_2:600,conv_3:900,conv_4:600,conv_5:300" "${LAB5_FIGURES[@]}" \
  -- "${LAB5_FLAGS[@]}" --lr "$LAB5_LAYERS_LR" --content-layers conv_5:1
