# SSDLite-EMOv1 (iRMB) at 320x320 on COCO 2017, as the EMOv1 authors logged it: the EMOv2
# setting with the EMOv1 backbone, AdamW 1.2e-3, no gradient clipping, cosine over all 120
# epochs, warm-up from 1e-3x.
_base_ = ['./ssdlite_emov2_coco.py']
model = dict(backbone=dict(type='emo_mm.EMO', window_size=7))
optim_wrapper = dict(optimizer=dict(lr=1.2e-3), clip_grad=None)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=120, T_max=120, by_epoch=True),
]
