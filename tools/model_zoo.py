"""Prints the model-zoo tables (Markdown) from ``model-index.yml`` and its metafiles.

    python tools/model_zoo.py                     # print
    python tools/model_zoo.py --update README.md  # replace the README's generated section

The README's section between ``<!-- model-zoo:start -->`` and ``<!-- model-zoo:end -->``
is this tool's output (a test keeps them equal); edit the metafiles through
``tools/make_metafiles.py``, then run ``--update``.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

import yaml

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
START, END = '<!-- model-zoo:start -->', '<!-- model-zoo:end -->'


def load_index(index_path: str = osp.join(REPO, 'model-index.yml')):
    """Returns ``[(metafile path, collections, models)]`` in the index's order."""
    root = osp.dirname(index_path)
    with open(index_path) as f:
        index = yaml.safe_load(f)
    files = []
    for path in index['Import']:
        with open(osp.join(root, path)) as f:
            data = yaml.safe_load(f)
        files.append((path, data.get('Collections', []), data.get('Models', [])))
    return files


def _millions(value) -> str:
    return '-' if value is None else f'{value / 1e6:.2f}M'


def _giga(value) -> str:
    if value is None:
        return '-'
    return f'{value / 1e9:.3f}G' if value < 1e10 else f'{value / 1e9:.1f}G'


def _link(text: str, url: str) -> str:
    return f'[{text}]({url})' if url else '-'


def title(collection: dict, backbone: str) -> str:
    """``RetinaNet-EMOv2`` for a detector / segmentor, the name alone for EMO's own."""
    name = collection['Name']
    return name if 'EMO' in name else f'{name}-{backbone}'


def table(collection: dict, models: list) -> str:
    """One Markdown table for models of one collection and one backbone."""
    metric_names = list(OrderedDict.fromkeys(
        f'{name}' for m in models for r in m.get('Results') or [] for name in r['Metrics']))
    header = ['model', 'config', 'params', 'FLOPs', 'input', *metric_names, 'weights', 'log']
    align = ['---', '---', '---:', '---:', '---', *['---:'] * len(metric_names), '---', '---']
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(align) + '|']
    notes = OrderedDict()  # note -> the models it is about
    for m in models:
        metrics = {}
        for result in m.get('Results') or []:
            metrics.update(result['Metrics'])
        meta = m.get('Metadata', {})
        config = m['Config']
        row = [f'`{m["Name"]}`', _link(osp.basename(config), config),
               _millions(meta.get('Parameters')), _giga(meta.get('FLOPs')),
               meta.get('FLOPs Input', '-'),
               *[str(metrics.get(name, '-')) for name in metric_names],
               _link('authors\'', m.get('Weights')), _link('log', m.get('Training Log'))]
        lines.append('| ' + ' | '.join(row) + ' |')
        if m.get('Notes'):
            notes.setdefault(m['Notes'], []).append(f'`{m["Name"]}`')
    sources = list(OrderedDict.fromkeys(m['Results Source'] for m in models
                                        if m.get('Results Source')))
    first = models[0]
    paper = first['Paper']
    text = [f'**{title(collection, first["Metadata"]["Backbone"])}** '
            f'({collection["Metadata"]["Training Data"]}; '
            f'paper: [{paper["Title"]}]({paper["URL"]}), code: {first["Code"]})',
            '', *lines, '']
    if sources:
        text.append('Results: ' + '; '.join(sources) + '.')
    for note, names in notes.items():
        text.append(f'{", ".join(names)}: {note}')
    if sources or notes:
        text.append('')
    return '\n'.join(text)


def render(index_path: str = osp.join(REPO, 'model-index.yml')) -> str:
    blocks = []
    for _, collections, models in load_index(index_path):
        for col in collections:
            members = [m for m in models if m['In Collection'] == col['Name']]
            backbones = OrderedDict.fromkeys(m['Metadata']['Backbone'] for m in members)
            for backbone in backbones:  # one table per backbone (EMOv2, then EMOv1)
                blocks.append(table(col, [m for m in members
                                          if m['Metadata']['Backbone'] == backbone]))
    return '\n'.join(blocks).rstrip('\n') + '\n'


def update_readme(path: str, text: str) -> bool:
    """Replaces the generated section of ``path``; returns whether the file changed."""
    with open(path) as f:
        content = f.read()
    if content.count(START) != 1 or content.count(END) != 1:
        raise SystemExit(f'{path} must hold exactly one {START} ... {END} pair; add them '
                         f'where the model-zoo tables belong.')
    head, rest = content.split(START)
    _, tail = rest.split(END)
    new = f'{head}{START}\n{text}{END}{tail}'
    if new != content:
        with open(path, 'w') as f:
            f.write(new)
    return new != content


def readme_section(path: str) -> str:
    """The text between the markers of ``path`` (what ``--update`` wrote)."""
    with open(path) as f:
        content = f.read()
    return content.split(START, 1)[1].split(END, 1)[0].lstrip('\n')


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--update', metavar='README', help='write the tables into this file')
    args = parser.parse_args()
    text = render()
    if args.update:
        changed = update_readme(args.update, text)
        print(f'{args.update}: {"updated" if changed else "already up to date"}',
              file=sys.stderr)
    else:
        sys.stdout.write(text)


if __name__ == '__main__':
    main()
