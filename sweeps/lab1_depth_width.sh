#!/usr/bin/env bash
# Report, Lab 1 §2 "深度与宽度": depth 1..15 x width 5..75 (step 5), lr 0.01, 500 epochs of
# full-batch SGD, for relu and for sigmoid, with trained hidden layers and with the report's frozen
# shared one -> heatmaps of the minimum validation MSE (log colour) and the table of the epochs where it
# was reached (the report's argmin table), per activation and hidden-layer variant.
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  smoke) depths=1..4  widths=5:75:20 setting="depths 1-4, widths 5, 25, 45, 65 only" ;;
  full)  depths=1..15 widths=5:75:5 setting="the report's grid" ;;
esac
# hidden_layers: trained (ours) and report (the report's code: one shared hidden layer, never trained)
sweep lab1_depth_width lab1_fnn \
  --title "Lab 1: minimum validation MSE over depth x width (lr 0.01, 500 epochs)" --setting "$setting" \
  --grid activation=relu,sigmoid hidden_layers=trained,report depth=$depths width=$widths \
  --heatmap depth,width --metric best_val_mse --log-color --table best_epoch \
  -- --epochs 500 --lr 0.01
