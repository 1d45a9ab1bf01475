#!/usr/bin/env bash
# Report, Lab 1 §2 "深度与宽度": depth 1..15 x width 5..75 (step 5), lr 0.01, 500 epochs of
# full-batch SGD, for relu and for sigmoid -> heatmaps of the minimum validation MSE (log colour)
# and the table of the epochs where it was reached (the report's argmin table).
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  smoke) depths=1..4  widths=5:75:10 ;;
  full)  depths=1..15 widths=5:75:5 ;;
esac
sweep lab1_depth_width lab1_fnn \
  --title "Lab 1: minimum validation MSE over depth x width (lr 0.01, 500 epochs)" \
  --grid activation=relu,sigmoid depth=$depths width=$widths \
  --heatmap depth,width --metric best_val_mse --log-color --table best_epoch \
  -- --epochs 500 --lr 0.01
