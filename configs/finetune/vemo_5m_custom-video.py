# Fine-tune V-EMO-5M on your own videos (mmaction2 VideoDataset):
#   data/my_videos/{train,val}/*.mp4 and data/my_videos/{train,val}.txt with lines "<file> <label>"
#   python tools/train.py configs/finetune/vemo_5m_custom-video.py
_base_ = ['../vemo_5m_k400.py']
data_root = 'data/my_videos'
num_classes = 5

model = dict(cls_head=dict(num_classes=num_classes))
train_dataloader = dict(dataset=dict(ann_file=f'{data_root}/train.txt',
                                     data_prefix=dict(video=f'{data_root}/train')))
val_dataloader = dict(dataset=dict(ann_file=f'{data_root}/val.txt',
                                   data_prefix=dict(video=f'{data_root}/val')))
test_dataloader = dict(dataset=dict(ann_file=f'{data_root}/val.txt',
                                    data_prefix=dict(video=f'{data_root}/val')))
