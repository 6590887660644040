# Mask R-CNN-EMOv2-1M on the generated COCO-format shapes set (learning tests).
# Only data, schedule and batch settings differ from configs/mask-rcnn_emov2_1m_coco.py, and
# the backbone starts from a stand-in for the ImageNet checkpoint: EMOv2-1M pretrained for
# 1.5 CPU minutes on labelling generated shapes (emo_mm/demo/pretrain.py; written by
# `python tools/misc/make_demo_data.py coco shapes_backbone`); nothing frozen, BatchNorm
# statistics updated, since that pretraining is short. Paths and class names come from
# ./_base_/demo_coco.py.
_base_ = ['../mask-rcnn_emov2_1m_coco.py', './_base_/demo_coco.py']

data_root = _base_.demo_coco_data_root
metainfo = _base_.demo_coco_metainfo
model = dict(
    backbone=dict(init_cfg=dict(checkpoint=_base_.demo_shapes_backbone), frozen_stages=-1,
                  norm_eval=False),
    roi_head=dict(bbox_head=dict(num_classes=4), mask_head=dict(num_classes=4)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=32))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 128), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(_base_.demo_coco_loader, batch_size=4,
                        dataset=dict(_base_.demo_coco_train_dataset, pipeline=train_pipeline))
val_dataloader = dict(_base_.demo_coco_loader, batch_size=8,
                      dataset=dict(_base_.demo_coco_val_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = _base_.demo_coco_evaluator
test_evaluator = val_evaluator

max_epochs = _base_.demo_coco_max_epochs
optim_wrapper = dict(optimizer=dict(lr=6e-4), clip_grad=None)
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = _base_.demo_coco_param_scheduler
default_hooks = dict(logger=dict(interval=4), checkpoint=dict(interval=max_epochs))
