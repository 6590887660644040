"""The demo trainings of the test suite, each run once per pytest session and shared.

A training is named by a :data:`RECIPES` key; the session fixture ``demo_training`` in
conftest.py trains it on first request (in-process, from the repository root, as the
learning tests always did) and hands every later caller the same :class:`Run`: its
checkpoint, the test metrics before and after training, and the predictions of the test
after training. The learning tests assert on those metrics; the deploy tests export the
checkpoints and compare the bundles' predictions with these.

``make demo`` (``tools/demo.py``) trains a lighter RetinaNet-EMOv2 on a set of its own
(``configs/demo/retinanet_emov2_1m_make-demo.py``); tests/test_demo.py runs it.

``EMO_MM_TEST_TRAINED_CACHE=DIR`` keeps the runs in DIR across sessions, keyed by the
recipe and the resolved config's text (for working on the tests that use them; the
suite's own runs train afresh).
"""
import glob
import hashlib
import json
import os
import os.path as osp
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from helpers import REPO, train_and_test


class Recipe(NamedTuple):
    config: str  # relative to the repository
    schedule: Dict  # max_epochs or max_iters
    data: Tuple[Callable[[], object], ...]  # generators to run first (idempotent)
    seed: int = 0


class Run(NamedTuple):
    name: str
    config: str  # absolute path
    checkpoint: str
    before: Dict
    after: Dict
    work_dir: str
    predictions: str  # the data samples of the evaluation after training (a .pkl)


def _coco():
    from emo_mm.demo.data import DEMO_SETTINGS, make_coco_shapes
    make_coco_shapes(osp.join(REPO, DEMO_SETTINGS.demo_coco_root))


def _shapes_backbone():
    from emo_mm.demo.pretrain import SHAPES_BACKBONE, pretrain_shapes_backbone
    pretrain_shapes_backbone(osp.join(REPO, SHAPES_BACKBONE))


def _ade20k():
    from emo_mm.demo.data import DEMO_SETTINGS, make_ade20k_regions
    make_ade20k_regions(osp.join(REPO, DEMO_SETTINGS.demo_ade20k_root))


def _hrf():
    from emo_mm.demo.data import DEMO_SETTINGS, make_hrf_vessels
    make_hrf_vessels(osp.join(REPO, DEMO_SETTINGS.demo_hrf_root))


def _kinetics():
    from emo_mm.demo.data import DEMO_SETTINGS, make_motion_videos
    make_motion_videos(osp.join(REPO, DEMO_SETTINGS.demo_kinetics_root))


def _shapes_cls():
    from emo_mm.demo.data import DEMO_SETTINGS, make_shapes_classification
    make_shapes_classification(osp.join(REPO, DEMO_SETTINGS.demo_cls_root))


RECIPES: Dict[str, Callable[[], Recipe]] = {
    'retinanet_emov2': lambda: Recipe('configs/demo/retinanet_emov2_1m_demo.py',
                                      dict(max_epochs=6), (_coco, _shapes_backbone)),
    'retinanet_emov1': lambda: Recipe('configs/demo/retinanet_emov1_1m_demo.py',
                                      dict(max_epochs=6), (_coco, )),
    'ssdlite_emov2': lambda: Recipe('configs/demo/ssdlite_emov2_1m_demo.py',
                                    dict(max_epochs=6), (_coco, _shapes_backbone)),
    'mask_rcnn_emov2': lambda: Recipe('configs/demo/mask-rcnn_emov2_1m_demo.py',
                                      dict(max_epochs=3), (_coco, _shapes_backbone)),
    'deeplabv3_emov2': lambda: Recipe('configs/demo/deeplabv3_emov2_1m_demo.py',
                                      dict(max_iters=150), (_ade20k, )),
    'deeplabv3_emov1': lambda: Recipe('configs/demo/deeplabv3_emov1_1m_demo.py',
                                      dict(max_iters=150), (_ade20k, )),
    'uemo': lambda: Recipe('configs/demo/uemo_demo.py', dict(max_iters=150), (_hrf, )),
    'vemo': lambda: Recipe('configs/demo/vemo_demo.py', dict(max_epochs=8), (_kinetics, )),
    'vemo_single_frame': lambda: Recipe('configs/demo/vemo_demo_single_frame.py',
                                        dict(max_epochs=8), (_kinetics, )),
    'classifier_emov2': lambda: Recipe('configs/demo/emov2_1m_shapes-cls_demo.py',
                                       dict(max_epochs=40), (_shapes_cls, _shapes_backbone)),
}


class TrainedModels:
    """Trains recipes on first request and caches the runs (one instance per session)."""

    def __init__(self, root: str, cache: Optional[str] = None):
        self.root = root
        self.cache = cache
        self.runs: Dict[str, Run] = {}

    def __call__(self, name: str) -> Run:
        if name not in self.runs:
            self.runs[name] = self._cached(name) if self.cache else self._train(name, self.root)
        return self.runs[name]

    def _cached(self, name: str) -> Run:
        from mmengine.config import Config
        recipe = RECIPES[name]()
        text = Config.fromfile(osp.join(REPO, recipe.config)).pretty_text
        stamp = f'{recipe.config}{recipe.schedule}{recipe.seed}{text}'
        key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
        root = osp.join(self.cache, f'{name}-{key}')
        record = osp.join(root, 'run.json')
        if osp.isfile(record):
            with open(record) as f:
                return Run(**json.load(f))
        run = self._train(name, root)
        # Metrics may be numpy scalars (mmseg's); the record is written whole or not at all.
        with open(record + '.tmp', 'w') as f:
            json.dump(run._asdict(), f, default=float)
        os.replace(record + '.tmp', record)
        return run

    def _train(self, name: str, root: str) -> Run:
        if name not in RECIPES:
            raise KeyError(f'no demo training {name!r}; known: {sorted(RECIPES)}')
        recipe = RECIPES[name]()
        previous = os.getcwd()
        os.chdir(REPO)  # the demo configs name data/ relative to the repository
        try:
            for make in recipe.data:
                make()
            work_dir = osp.join(root, name)
            config = osp.join(REPO, recipe.config)
            # CheckpointSafetyHook only changes how checkpoints are written (plain types,
            # atomically), so that tools/test.py reads them without unpickling code.
            predictions = osp.join(root, f'{name}_predictions.pkl')
            before, after = train_and_test(
                config, work_dir, recipe.schedule, seed=recipe.seed,
                extra_hooks=[dict(type='emo_mm.CheckpointSafetyHook')], dump=predictions)
        finally:
            os.chdir(previous)
        return Run(name, config, _last_checkpoint(work_dir), before, after, work_dir,
                   predictions)


def _last_checkpoint(work_dir: str) -> Optional[str]:
    found = glob.glob(osp.join(work_dir, '*_*.pth'))
    if not found:
        raise FileNotFoundError(f'The training in {work_dir} wrote no checkpoint.')
    return max(found, key=lambda p: int(osp.splitext(p)[0].rsplit('_', 1)[1]))
