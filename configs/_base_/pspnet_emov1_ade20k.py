# PSPNet with EMOv1 (iRMB) on ADE20K, 512x512, 80k iterations, as the EMOv1 authors
# logged it: AdamW 1.2e-4, wd 0.01 (none on norms), poly decay (power 0.9) to 0, no
# warm-up, no gradient clipping; 8 GPUs x 4 images.
_base_ = ['./pspnet_emov2_ade20k.py']
model = dict(backbone=dict(_delete_=True, type='emo_mm.EMO', arch='5M', window_size=16,
                           out_indices=(1, 2, 3, 4), frozen_stages=-1, norm_eval=False,
                           drop_path_rate=0.05,
                           init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMO_5M.pth')))
optim_wrapper = dict(optimizer=dict(weight_decay=0.01), clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0., power=0.9, begin=0, end=80000, by_epoch=False),
]
train_dataloader = dict(batch_size=4)
