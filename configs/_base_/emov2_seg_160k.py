# Schedule of the authors' Semantic FPN / SegFormer-head ADE20K runs: the shared
# segmentation optimizer (emov2_seg_schedule.py) with 10x lr on every parameter whose name
# contains `head` (the decode head) and no gradient clipping; 160k iterations, 1500 warm-up
# iterations from 1e-6, constant, cosine to 0 over iterations 80k-160k; val and checkpoint
# every 16k.
_base_ = ['./emov2_seg_schedule.py']

optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
max_iters = 160000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=16000)
default_hooks = dict(checkpoint=dict(interval=16000))
