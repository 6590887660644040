# What the EMOv2 ADE20K configs (DeepLabv3, PSPNet, Semantic FPN, SegFormer head) share:
# mmseg's ADE20K data (512x512 crops) and runtime, 4 GPUs x 8 images, and the backbone:
# stages 1-4 out, nothing frozen, BatchNorm statistics updated. The backbone is a variable
# (`emov2_backbone`), not part of `model`: `model` comes from the toolbox's model base, and
# mmengine refuses a key that two bases of one config define. Each model base takes it with
# `backbone=dict(_delete_=True, **_base_.emov2_backbone)`; variants set arch, drop_path_rate
# and the pretrained file in `model.backbone`.
_base_ = ['mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/default_runtime.py']
crop_size = (512, 512)
emov2_backbone = dict(
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
    init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth'))
train_dataloader = dict(batch_size=8, num_workers=4)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
