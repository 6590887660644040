"""Draw the samples a config's pipeline produces (ground truth), with the toolbox's own
browse_dataset tool, bounded: every config of emo_mm, any toolbox.

    python tools/analysis_tools/browse_dataset.py configs/demo/ssdlite_emov2_1m_demo.py -n 8 \\
        --output-dir vis
    python tools/analysis_tools/browse_dataset.py configs/demo/vemo_demo.py --phase val -n 4 \\
        --not-show ...

The toolboxes' scripts (mmdet's and mmseg's ``tools/analysis_tools/browse_dataset.py``,
mmpretrain's and mmaction2's ``tools/visualization(s)/browse_dataset.py``, shipped in their
wheels under ``.mim/``) walk the whole training set; mmdet's and mmseg's have no count
option and, on a config that repeats its data (``RepeatDataset``, the demo configs'
``times=...``), take as long as that many epochs. Here the data set of ``--phase`` is
taken out of such wrappers (each sample once) and cut to its first ``-n`` samples, and
the toolbox's script draws it. Errors print one line (exit code 2).
"""
import argparse
import os
import os.path as osp
import runpy
import sys
import tempfile

from mmengine.config import DictAction

import emo_mm.compat.enable  # noqa: F401  (first: applies the upstream fixes)
from emo_mm.apis import load_config
from emo_mm.checks.data import set_data_root
from emo_mm.engine import UserError, run_cli

#: The toolbox's browse_dataset script, relative to its package, by config scope.
SCRIPTS = {
    'mmdet': ('mmdet', 'tools/analysis_tools/browse_dataset.py'),
    'mmseg': ('mmseg', 'tools/analysis_tools/browse_dataset.py'),
    'mmpretrain': ('mmpretrain', 'tools/visualization/browse_dataset.py'),
    'mmaction': ('mmaction', 'tools/visualizations/browse_dataset.py'),
}
#: Wrappers that repeat or re-weight one data set.
REPEATING_WRAPPERS = ('RepeatDataset', 'ClassBalancedDataset')


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file (or the name of one in configs/)')
    parser.add_argument('-n', '--show-number', type=int, default=None,
                        help='draw the first N samples (default: every sample once)')
    parser.add_argument('--phase', choices=['train', 'val', 'test'], default='train',
                        help='which data loader\'s data set and pipeline (default train)')
    parser.add_argument('--output-dir', help='write the pictures here (mmaction2: videos; '
                        'required)')
    parser.add_argument('--not-show', action='store_true', help='do not open windows')
    parser.add_argument('--show-interval', type=float, default=2,
                        help='seconds each window stays open')
    parser.add_argument('--data-root', help='data set folder, replacing the config\'s data_root')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    parser.add_argument('--debug', action='store_true', help='show tracebacks of errors')
    return parser.parse_args()


def _unwrap(dataset: dict) -> dict:
    """The data set under repeating wrappers (each sample then comes once)."""
    while dataset.get('type') in REPEATING_WRAPPERS and isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    return dataset


def _limit(dataset: dict, count: int) -> None:
    """Cuts every leaf data set to its first ``count`` samples (MMEngine's ``indices``)."""
    if isinstance(dataset.get('datasets'), (list, tuple)):  # ConcatDataset: each part
        for part in dataset['datasets']:
            _limit(_unwrap(part), count)
        return
    indices = dataset.get('indices')
    dataset['indices'] = min(indices, count) if isinstance(indices, int) else count


def bounded_config(args):
    """The config with ``train_dataloader.dataset`` = the phase's data set, bounded."""
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    scope = cfg.get('default_scope')
    if scope not in SCRIPTS:
        raise UserError(f'{args.config}: browsing needs a config of mmdet, mmseg, mmpretrain or '
                        f'mmaction2 (its default_scope is {scope!r}).')
    if args.show_number is not None and args.show_number < 1:
        raise UserError(f'-n/--show-number must be at least 1, got {args.show_number}.')
    loader = cfg.get(f'{args.phase}_dataloader')
    if not loader or not loader.get('dataset'):
        raise UserError(f'{args.config} has no {args.phase}_dataloader.dataset to browse; '
                        'pick another --phase.')
    dataset = _unwrap(loader['dataset'])
    if args.show_number is not None:
        _limit(dataset, args.show_number)
    cfg.train_dataloader = dict(cfg.get('train_dataloader') or {}, dataset=dataset)
    return cfg, scope


def script_of(scope: str) -> str:
    package, relative = SCRIPTS[scope]
    module = __import__(package)
    path = osp.join(osp.dirname(module.__file__), '.mim', relative)
    if not osp.isfile(path):
        raise UserError(f'{package} has no {relative} in {osp.dirname(path)} (installed '
                        'without its tools?): reinstall it from a wheel.')
    return path


def main():
    args = parse_args()
    cfg, scope = bounded_config(args)
    script = script_of(scope)
    with tempfile.TemporaryDirectory() as tmp:
        config = osp.join(tmp, osp.basename(cfg.filename or 'config.py'))
        cfg.dump(config)
        argv = [script, config]
        if scope == 'mmaction':  # writes videos, shows nothing: the folder is required
            if not args.output_dir:
                raise UserError("mmaction2's browse_dataset writes videos and shows none: "
                                'give --output-dir DIR.')
            os.makedirs(args.output_dir, exist_ok=True)
            argv += [args.output_dir, '--phase', 'train']
        else:
            if args.output_dir:
                os.makedirs(args.output_dir, exist_ok=True)
                argv += ['--output-dir', args.output_dir]
            if args.not_show:
                argv.append('--not-show')
            argv += ['--show-interval', str(args.show_interval)]
            if scope == 'mmpretrain':
                argv += ['--phase', 'train']  # the bounded data set is train_dataloader's
        sys.argv = argv
        runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    run_cli(main)
