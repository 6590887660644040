# The generated COCO-format shapes set as the demo detectors read it, and the short CPU
# schedule they share: the detection demo configs inherit this file beside their toolbox
# config. Every name starts with `demo_coco_` (mmengine refuses a key that two bases of one
# config define); a config uses them as `_base_.demo_coco_...`.
_base_ = ['./demo_data.py']

demo_coco_data_root = _base_.demo_coco_root + '/'  # mmdet appends file names as strings
demo_coco_metainfo = dict(classes=_base_.demo_coco_classes)
demo_coco_loader = dict(num_workers=0, persistent_workers=False)
demo_coco_train_dataset = dict(
    data_root=demo_coco_data_root, metainfo=demo_coco_metainfo,
    ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
    filter_cfg=dict(filter_empty_gt=True, min_size=8))
demo_coco_val_dataset = dict(
    data_root=demo_coco_data_root, metainfo=demo_coco_metainfo,
    ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'))
demo_coco_evaluator = dict(ann_file=demo_coco_data_root + 'annotations/instances_val.json')

# Minutes on a CPU after a short pretraining: no gradient clipping (tuned for fine-tuning
# ImageNet weights, it stalls AdamW here), short warm-up, cosine to 0.
demo_coco_max_epochs = 12
demo_coco_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=40),
    dict(type='CosineAnnealingLR', eta_min=0., begin=0, end=demo_coco_max_epochs,
         T_max=demo_coco_max_epochs, by_epoch=True),
]
