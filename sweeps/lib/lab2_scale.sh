# Sourced by the lab2_*.sh sweeps: the flags of each SCALE.
#   smoke: a class-balanced 2000-image Fashion-MNIST subset and a narrow net, 3 seeds, CPU minutes;
#   full: Tiny-ImageNet-200 at the report's widths (64,128,256,512,256,128), on a GPU.
case "$SCALE" in
  smoke) LAB2_FLAGS=(--dataset fashion-mnist --limit-train 2000 --limit-test 1000 --widths 8,16,32,64,32,16
                     --batch-size 64)
         LAB2_EPOCHS=5 LAB2_LONG_EPOCHS=15 LAB2_SEEDS=3
         LAB2_SETTING="Fashion-MNIST 2000-image subset (report: Tiny-ImageNet), widths 8..64, 3 seeds" ;;
  full)  LAB2_FLAGS=(--dataset tiny-imagenet --batch-size 128)
         LAB2_EPOCHS=15 LAB2_LONG_EPOCHS=30 LAB2_SEEDS=1
         LAB2_SETTING="Tiny-ImageNet-200 at the report's widths" ;;
esac
