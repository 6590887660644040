# What the authors' ADE20K schedules (and their HRF one) share, in place of mmseg's
# schedule files: AdamW 1.2e-4, wd 0.05, none on parameters whose name contains `norm` (the
# backbone's norms; mmseg's heads call theirs `bn`); iteration-based loops; logging every
# 50 iterations. emov2_seg_80k.py and emov2_seg_160k.py add the length, warm-up, cosine
# decay, validation / checkpoint interval and the rules that differ. The authors' configs
# also list `absolute_pos_embed` and `relative_position_bias_table` (80k) or `pos_block`
# (160k) for decay 0: Swin / PVT parameter names that no parameter of these models
# contains, so they are left out (tests/test_config_keys.py checks that every key matches a
# parameter); the optimizer's parameter groups are the same without them.
# emo_mm.compat.enable applies emo_mm's upstream fixes (the toolboxes' own tools need them).
custom_imports = dict(imports=['emo_mm.compat.enable', 'emo_mm.models'],
                      allow_failed_imports=False)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}),
)
# The learning rate is the authors' for 32 images per step (4 GPUs x 8; EMOv1: 8 x 4):
# `tools/train.py --auto-scale-lr` scales it to the batch of the run.
auto_scale_lr = dict(enable=False, base_batch_size=32)
train_cfg = dict(type='IterBasedTrainLoop')
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
