# PSPNet with EMOv2 on ADE20K, 512x512 crops, 4 GPUs x 8 images (spec 6.4). Variants
# set arch, drop_path_rate, the pretrained file and the head widths.
_base_ = [
    'mmseg::_base_/models/pspnet_r50-d8.py',
    'mmseg::_base_/datasets/ade20k.py',
    './emov2_seg_80k.py',
    'mmseg::_base_/default_runtime.py',
]
crop_size = (512, 512)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='emo_mm.EMOv2',
        arch='5M',
        window_size=10,
        out_indices=(1, 2, 3, 4),
        frozen_stages=-1,
        norm_eval=False,
        drop_path_rate=0.05,
        # The logged ADE20K runs used the classifier / detection block (BN + SiLU in the
        # depth-wise conv), not the LN + GELU one of the authors' released seg file.
        local_norm='bn',
        init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth')),
    decode_head=dict(in_channels=288, channels=256, num_classes=150),
    auxiliary_head=dict(in_channels=160, channels=256, num_classes=150),
)
train_dataloader = dict(batch_size=8, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
