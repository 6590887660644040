# Schedule of the authors' RetinaNet / Mask R-CNN COCO runs, in place of mmdet's
# schedule_1x: AdamW 2e-4, wd 0.05, none on parameters whose name contains `norm` (the
# backbone's norms; the FPN and heads have none), gradient clipping at 0.1, 500 warm-up
# iterations from 1e-5, constant, then cosine to 0 over epochs 6-12. The authors' configs
# also list `absolute_pos_embed` and `relative_position_bias_table` for decay 0: Swin
# parameter names that no parameter of these models contains, so they are left out
# (tests/test_config_keys.py checks that every key matches a parameter); the optimizer's
# parameter groups are the same without them.
# emo_mm.compat.enable applies emo_mm's upstream fixes (the toolboxes' own tools need them).
custom_imports = dict(imports=['emo_mm.compat.enable', 'emo_mm.models'],
                      allow_failed_imports=False)

optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
max_epochs = 12
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=6, end=max_epochs, T_max=6,
         by_epoch=True),
]
# 4 GPUs x 4 images.
auto_scale_lr = dict(enable=False, base_batch_size=16)
