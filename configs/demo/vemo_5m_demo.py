# V-EMO-5M on the generated motion videos (learning tests). Only data, schedule and batch
# settings differ from configs/vemo_5m_k400.py: 64x64 videos seen at 48x48, 6 motion classes, no
# RandAugment; the backbone trains from scratch (no ImageNet checkpoint is
# bundled).
_base_ = ['../vemo_5m_k400.py']

data_root = 'data/demo_kinetics'
model = dict(
    backbone=dict(init_cfg=None),
    cls_head=dict(num_classes=6))

train_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1),
    dict(type='DecordDecode'),
    dict(type='RandomResizedCrop', area_range=(0.7, 1.0)),
    dict(type='Resize', scale=(48, 48), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
val_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(48, 48), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='DecordInit'),
    dict(type='UniformSample', clip_len=4, num_clips=1, test_mode=True),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 48)),
    dict(type='ThreeCrop', crop_size=48),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_train_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_train'), pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_val_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_val'), pipeline=val_pipeline))
test_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(ann_file=f'{data_root}/kinetics_val_list_videos.txt',
                 data_prefix=dict(video=f'{data_root}/videos_val'), pipeline=test_pipeline))

max_epochs = 10
warmup_epochs = 1
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
optim_wrapper = dict(optimizer=dict(lr=1e-3))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0, end=warmup_epochs,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=max_epochs - warmup_epochs, eta_min_ratio=0.1,
         by_epoch=True, begin=warmup_epochs, end=max_epochs, convert_to_iter_based=True),
]
default_hooks = dict(checkpoint=dict(interval=max_epochs), logger=dict(interval=5))
auto_scale_lr = dict(enable=False)
