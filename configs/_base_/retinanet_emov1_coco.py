# RetinaNet-EMOv1 (iRMB), FPN, 1x on COCO 2017, as the EMOv1 authors logged it: the EMOv2
# setting with the EMOv1 backbone, no gradient clipping, 8 GPUs x 4 images and a cosine
# schedule over all 12 epochs.
_base_ = ['./retinanet_emov2_coco.py']
model = dict(backbone=dict(type='emo_mm.EMO', window_size=7))
optim_wrapper = dict(clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=12, T_max=12, by_epoch=True),
]
auto_scale_lr = dict(base_batch_size=32)
