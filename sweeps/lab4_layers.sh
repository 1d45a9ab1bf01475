#!/usr/bin/env bash
# Report, Lab 4 §3: 2 to 7 GCN layers (self-loops on, tanh as the report chose) -> validation-loss
# curve overlays per dataset-task pair and the test score against the number of layers.
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  smoke) datasets=cora epochs=100 ;;
  full)  datasets=cora,citeseer,ppi epochs=1500 ;;
esac
sweep lab4_layers lab4_gcn \
  --title "Lab 4: number of GCN layers" \
  --grid dataset=$datasets task=node,link layers=2..7 \
  --metric test_score --table best_val_score best_epoch --lines layers \
  --curves val_loss --curves-by task \
  -- --epochs $epochs --activation tanh
