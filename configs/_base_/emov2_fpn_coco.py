# What RetinaNet- and Mask R-CNN-EMOv2 share: the 1x schedule (emov2_coco_1x.py), mmdet's
# runtime and the backbone that feeds their FPN: stages 1-4 out, `frozen_stages=1`,
# BatchNorm statistics fixed. The backbone is a variable (`emov2_backbone`), not part of
# `model`: `model` comes from the toolbox's model base, and mmengine refuses a key that two
# bases of one config define. Each model base takes it with
# `backbone=dict(_delete_=True, **_base_.emov2_backbone)`; variants set arch,
# drop_path_rate and the pretrained file in `model.backbone`.
_base_ = ['./emov2_coco_1x.py', 'mmdet::_base_/default_runtime.py']
emov2_backbone = dict(
    type='emo_mm.EMOv2',
    arch='5M',
    window_size=10,
    out_indices=(1, 2, 3, 4),
    frozen_stages=1,
    norm_eval=True,
    drop_path_rate=0.05,
    init_cfg=dict(type='Pretrained', checkpoint='pretrained/EMOv2_5M_224.pth'))
