# Schedule of the authors' DeepLabv3 / PSPNet ADE20K runs, also the shape of their U-EMO
# HRF schedule: the shared segmentation optimizer (emov2_seg_schedule.py) with gradient
# clipping at 0.1; 80k iterations, 500 warm-up iterations from 1e-5, constant, cosine to 0
# over the second half (40k-80k); val and checkpoint every 8k.
_base_ = ['./emov2_seg_schedule.py']

optim_wrapper = dict(clip_grad=dict(max_norm=0.1, norm_type=2))
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
