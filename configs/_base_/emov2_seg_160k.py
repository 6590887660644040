# Schedule of the authors' Semantic FPN / SegFormer-head ADE20K runs (spec 6.4), in place of
# mmseg's schedule_160k: AdamW 1.2e-4, wd 0.05, no decay on norms and pos_block, 10x lr on
# heads, no gradient clipping; 1500 warm-up iterations from 1e-6, constant, cosine to 0
# over iterations 80k-160k; val every 16k.
custom_imports = dict(imports=['emo_mm.models'], allow_failed_imports=False)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'head': dict(lr_mult=10.),
    }),
)
max_iters = 160000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=max_iters // 2, end=max_iters,
         T_max=max_iters // 2, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
