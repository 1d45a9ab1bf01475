#!/usr/bin/env bash
# Report, Lab 4 §3 "层数影响": 2 to 7 GCN layers, each dataset-task pair with the settings the report chose
# for it from its regularizer tables (tanh's best cell; prelu with T/T/T for PPI link) -> validation-loss
# curve overlays per task and the test score against the number of layers.
#   pair (self-loop / pair-norm / drop-edge):  cora node T/F/F · cora link T/F/T · citeseer node T/F/T
#   citeseer link T/F/F · ppi node T/F/F · ppi link prelu T/T/T. Drop-edge "T" is 0.2: the report gives
#   no rate, in its text or code.
source "$(dirname "$0")/lib/common.sh"
tanh="activation=tanh self_loop=true"
pairs=(--grid dataset=cora task=node $tanh pair_norm=false drop_edge=0 layers=2..7
       --grid dataset=cora task=link $tanh pair_norm=false drop_edge=0.2 layers=2..7)
case "$SCALE" in
  smoke) epochs=100 setting="embedded Cora only, 100 epochs (report: 1500), random 60/20/20 split" ;;
  full)  epochs=1500 setting="Cora and CiteSeer on a random 60/20/20 split"
         pairs+=(--grid dataset=citeseer task=node $tanh pair_norm=false drop_edge=0.2 layers=2..7
                 --grid dataset=citeseer task=link $tanh pair_norm=false drop_edge=0 layers=2..7
                 --grid dataset=ppi task=node $tanh pair_norm=false drop_edge=0 layers=2..7
                 --grid dataset=ppi task=link activation=prelu self_loop=true pair_norm=true drop_edge=0.2
                        layers=2..7) ;;
esac
sweep lab4_layers lab4_gcn \
  --title "Lab 4: number of GCN layers" --setting "$setting" \
  "${pairs[@]}" \
  --metric test_score --table best_val_score best_epoch --lines layers \
  --curves val_loss --curves-by task \
  -- --epochs $epochs
