# U-EMO on the generated HRF-format vessel set (learning tests). Only data, schedule and
# batch settings differ from configs/uemo_hrf.py: CPU-sized crops (48 for training, a
# 64 / 42 sliding window at test time, the real 256 / 170 scaled down) on 100x140
# images, sizes that are not multiples of the window or its stride.
_base_ = ['../uemo_hrf.py']

data_root = 'data/demo_hrf'
crop_size = (48, 48)
model = dict(
    data_preprocessor=dict(size=crop_size),
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(42, 42)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(
    batch_size=4, num_workers=0, persistent_workers=False,
    dataset=dict(times=1000, dataset=dict(data_root=data_root, pipeline=train_pipeline)))
val_dataloader = dict(
    batch_size=1, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 100
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=10),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=max_iters, T_max=max_iters,
         by_epoch=False),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(logger=dict(interval=10), checkpoint=dict(interval=max_iters))
