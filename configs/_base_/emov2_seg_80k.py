# Schedule of the authors' DeepLabv3 / PSPNet ADE20K runs (spec 6.4), also the shape of their
# U-EMO HRF schedule, in place of mmseg's schedule_80k: AdamW 1.2e-4, wd 0.05 (none on norms),
# gradient clipping at 0.1, 500 warm-up iterations from 1e-5, constant, cosine to 0 over the
# second half (40k-80k); val every 8k.
custom_imports = dict(imports=['emo_mm.models'], allow_failed_imports=False)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'absolute_pos_embed': dict(decay_mult=0.),
        'relative_position_bias_table': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
    }),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=8000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=8000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
