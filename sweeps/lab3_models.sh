#!/usr/bin/env bash
# Report, Lab 3: RNN, LSTM, Transformer encoder and fine-tuned BERT, each at train rates 0.25,
# 0.5, 0.75 and 1 -> per model an overlay of the validation-loss curves across train rates (each up to
# its best-validation-accuracy epoch, as the report drew them), the test-accuracy table (models x train
# rates) and its plot.
#   BERT=0 leaves BERT out (make demo: the three others take a minute; a later run adds BERT's points).
source "$(dirname "$0")/lib/common.sh"
case "$SCALE" in
  # Rotten Tomatoes (embedded), every model on the same 1600-text class-balanced training subset so that
  # BERT fits the budget and the comparison is like for like; BERT 2 epochs at 64 tokens
  smoke) fixed=(--dataset rotten-tomatoes --limit-train 1600 --epochs 5 --patience 2 --glove)
         bert=(epochs=2 max_len=64 batch_size=32)
         setting="Rotten Tomatoes snippets (report: IMDB), 1600 training texts, 5 epochs (BERT 2: MiniLM)" ;;
  # IMDB (aclImdb under the data root); BERT for 3 epochs at 512 tokens, on a GPU
  full)  fixed=(--dataset imdb --epochs 15 --patience 3 --max-len 400 --glove)
         bert=(epochs=3 max_len=512 batch_size=16)
         setting="IMDB; BERT is the 6-layer MiniLM (report: BERT-base)" ;;
esac
bert_grid=(--grid model=bert train_rate=0.25,0.5,0.75,1 "${bert[@]}")
[ "${BERT:-1}" = 0 ] && bert_grid=()
sweep lab3_models lab3_text \
  --title "Lab 3: test accuracy of four models at four train rates" --setting "$setting" \
  --grid model=rnn,lstm,transformer train_rate=0.25,0.5,0.75,1 \
  "${bert_grid[@]}" \
  --heatmap train_rate,model --metric test_acc --table best_val_acc seconds_per_epoch \
  --lines train_rate --curves val_loss --curves-by model --curves-until best_epoch \
  -- "${fixed[@]}"
