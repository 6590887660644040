# ImageNet-1k recipe of the EMOv1 authors: the EMOv2 recipe with batch 2048 (8 GPUs x 256)
# and lr 6e-3 (their config's 1.5e-3 x batch / 512, their trainer's scaling rule), warm-up
# from and cosine down to 1e-6 (2.5e-7 x 4).
_base_ = ['./emov2_in1k.py']

model = dict(backbone=dict(type='emo_mm.EMO', window_size=7))
train_dataloader = dict(batch_size=256)
# EMOv1 has no LayerScale: the EMOv2 recipe's `.gamma` rule would match no parameter.
optim_wrapper = dict(optimizer=dict(lr=6e-3), paramwise_cfg=dict(custom_keys=dict(_delete_=True)))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 6e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-6, by_epoch=True, begin=20, end=300,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=2048)
