#!/usr/bin/env bash
# Report, Lab 3: RNN, LSTM, Transformer encoder and fine-tuned BERT, each at train rates 0.25,
# 0.5, 0.75 and 1 -> per model an overlay of the validation-loss curves across train rates, the
# test-accuracy table (models x train rates) and its plot.
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  # Rotten Tomatoes (embedded); BERT on a 1000-text subset of the training split, 2 epochs
  smoke) fixed=(--dataset rotten-tomatoes --epochs 6 --patience 2 --glove)
         bert=(limit_train=1000 epochs=2 max_len=64 batch_size=32) ;;
  # IMDB (aclImdb under the data root); BERT for 3 epochs at 512 tokens, on a GPU
  full)  fixed=(--dataset imdb --epochs 15 --patience 3 --max-len 400 --glove)
         bert=(epochs=3 max_len=512 batch_size=16) ;;
esac
sweep lab3_models lab3_text \
  --title "Lab 3: test accuracy of four models at four train rates" \
  --grid model=rnn,lstm,transformer train_rate=0.25,0.5,0.75,1 \
  --grid model=bert train_rate=0.25,0.5,0.75,1 "${bert[@]}" \
  --heatmap train_rate,model --metric test_acc --table best_val_acc seconds_per_epoch \
  --lines train_rate --curves val_loss --curves-by model \
  -- "${fixed[@]}"
