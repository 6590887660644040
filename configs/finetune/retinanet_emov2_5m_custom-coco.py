# Fine-tune RetinaNet-EMOv2-5M on your own COCO-format detection set:
#   data/my_coco/annotations/{train,val}.json, images in data/my_coco/{train,val}/
#   python tools/train.py configs/finetune/retinanet_emov2_5m_custom-coco.py
# metainfo.classes must list the annotation file's category names; num_classes their
# number (a mismatch is an error before training).
_base_ = ['../retinanet_emov2_5m_coco.py']
data_root = 'data/my_coco/'
metainfo = dict(classes=('cat', 'dog'))

model = dict(bbox_head=dict(num_classes=2))
train_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/train.json',
                 data_prefix=dict(img='train/')))
val_dataloader = dict(
    dataset=dict(data_root=data_root, metainfo=metainfo, ann_file='annotations/val.json',
                 data_prefix=dict(img='val/')))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator
