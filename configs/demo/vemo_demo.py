# V-EMO on the generated motion videos (learning tests, tools tests). Differs from
# configs/vemo_5m_k400.py only in what a few CPU minutes need: a shallow V-EMO (1M widths,
# one block per stage but two in stage 3) trained from scratch (no ImageNet checkpoint is
# bundled), no drop-path, head dropout or gradient clipping (they slow learning this short),
# 64x64 videos seen at 32x32, 6 motion classes, no RandAugment, 8 epochs.
_base_ = ['../vemo_5m_k400.py', './_base_/demo_data.py']

data_root = _base_.demo_kinetics_root
size = 32
model = dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=[1, 1, 2, 1], embed_dims=[32, 48, 80, 180],
                  exp_ratios=[2., 2.5, 3., 3.5], dim_heads=[16, 16, 20, 20]),
        drop_path_rate=0.,
        init_cfg=None),
    cls_head=dict(num_classes=6, in_channels=180, dropout_ratio=0.))

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='RandomResizedCrop', area_range=(0.7, 1.0)),
    dict(type='Resize', scale=(size, size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(size, size), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, size)),
    dict(type='ThreeCrop', crop_size=size),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_train_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_val_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_val'), pipeline=val_pipeline))
test_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_val_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_val'), pipeline=test_pipeline))

max_epochs = 8
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=2e-3), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=20),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_epochs, T_max=max_epochs,
         by_epoch=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=10))
auto_scale_lr = dict(enable=False)
