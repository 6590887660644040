# SSDLite-EMOv2-1M (320x320) on the generated COCO-format shapes set (learning tests).
# Only data, schedule and batch settings differ from configs/ssdlite_emov2_1m_320_coco.py
# (no Expand / MinIoURandomCrop zoom-out: the demo objects already span the anchor sizes),
# and the backbone starts from the shapes-pretrained stand-in for the ImageNet checkpoint
# (emo_mm/demo/pretrain.py; `python tools/misc/make_demo_data.py coco shapes_backbone`), with its
# BatchNorm statistics updated. Paths and class names come from ./_base_/demo_coco.py.
_base_ = ['../ssdlite_emov2_1m_320_coco.py', './_base_/demo_coco.py']

data_root = _base_.demo_coco_data_root
metainfo = _base_.demo_coco_metainfo
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=_base_.demo_shapes_backbone), norm_eval=False),
    bbox_head=dict(num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(
    _base_.demo_coco_loader, batch_size=4,
    dataset=dict(times=1,
                 dataset=dict(_base_.demo_coco_train_dataset, pipeline=train_pipeline)))
val_dataloader = dict(_base_.demo_coco_loader, batch_size=8, dataset=_base_.demo_coco_val_dataset)
test_dataloader = val_dataloader
val_evaluator = _base_.demo_coco_evaluator
test_evaluator = val_evaluator

max_epochs = _base_.demo_coco_max_epochs
optim_wrapper = dict(clip_grad=None)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = _base_.demo_coco_param_scheduler
default_hooks = dict(logger=dict(interval=4), checkpoint=dict(interval=max_epochs))
