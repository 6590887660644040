# SSDLite-EMOv2 on COCO 2017 at 320x320 (the authors' README and log names say 300; their
# configs resize to 320). mmdet's SSDLite config with EMOv2 stages 3 and 4 (strides 16, 32)
# in place of MobileNetV2. Variants set arch, drop_path_rate, the pretrained file and the
# widths.
_base_ = ['mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py']
# emo_mm.compat.enable applies emo_mm's upstream fixes (the toolboxes' own tools need them).
custom_imports = dict(imports=['emo_mm.compat.enable', 'emo_mm.models'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='emo_mm.EMOv2',
        arch='5M',
        window_size=10,
        out_indices=(3, 4),
        frozen_stages=-1,
        norm_eval=True,
        drop_path_rate=0.05,
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth')),
    neck=dict(in_channels=(160, 288), out_channels=(160, 288, 512, 256, 256, 128)),
    bbox_head=dict(in_channels=(160, 288, 512, 256, 256, 128)),
)

# AdamW 0.0024 (= 2e-4 x 6 x 2) at batch 192 (8 GPUs x 24), wd 0.05, none on parameters
# whose name contains `norm` (the backbone's; mmdet's SSD neck and head call theirs `bn`),
# gradient clipping at 0.1; 500 warm-up iterations from 1e-5, constant, cosine to 0 over
# epochs 60-120 of the x5 repeated dataset; validation every 5 epochs. The authors' configs
# also list `absolute_pos_embed` and `relative_position_bias_table` for decay 0: Swin
# parameter names that no parameter of these models contains, so they are left out
# (tests/test_config_keys.py checks that every key matches a parameter); the optimizer's
# parameter groups are the same without them.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.0024, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=0.1, norm_type=2),
)
max_epochs = 120
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-5, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', eta_min=0., begin=60, end=max_epochs, T_max=60,
         by_epoch=True),
]
auto_scale_lr = dict(enable=False, base_batch_size=192)
