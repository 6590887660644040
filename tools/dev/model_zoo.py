"""Prints the model-zoo tables (Markdown) from ``model-index.yml`` and its metafiles.

    python tools/dev/model_zoo.py                             # print the tables
    python tools/dev/model_zoo.py --summary                   # print the one-table summary
    python tools/dev/model_zoo.py --update docs/model_zoo.md README.md  # rewrite both

The section of docs/model_zoo.md between ``<!-- model-zoo:start -->`` and
``<!-- model-zoo:end -->`` is this tool's tables, and the README's section between
``<!-- model-zoo-summary:start -->`` and ``<!-- model-zoo-summary:end -->`` its summary
(tests keep them equal); edit the metafiles through ``tools/dev/make_metafiles.py``, then run
``--update``. Links are written relative to the updated file, so they resolve wherever it
lies in the repository.
"""
import argparse
import os.path as osp
import sys
from collections import OrderedDict

import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
START, END = '<!-- model-zoo:start -->', '<!-- model-zoo:end -->'
SUMMARY_START, SUMMARY_END = '<!-- model-zoo-summary:start -->', '<!-- model-zoo-summary:end -->'
#: The page that holds the full tables (the summary links to it).
TABLES_PAGE = 'docs/model_zoo.md'


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


def table(collection: dict, models: list, link_root: str = '') -> str:
    """One Markdown table for models of one collection and one backbone.

    ``link_root`` is prefixed to the config links (``'../'`` for a page in ``docs/``).
    """
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
        row = [f'`{m["Name"]}`', _link(osp.basename(config), link_root + config),
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


def render(index_path: str = osp.join(REPO, 'model-index.yml'), link_root: str = '') -> str:
    """All tables; config links are relative to the repository root, prefixed by
    ``link_root``."""
    blocks = []
    for _, collections, models in load_index(index_path):
        for col in collections:
            members = [m for m in models if m['In Collection'] == col['Name']]
            backbones = OrderedDict.fromkeys(m['Metadata']['Backbone'] for m in members)
            for backbone in backbones:  # one table per backbone (EMOv2, then EMOv1)
                blocks.append(table(col, [m for m in members
                                          if m['Metadata']['Backbone'] == backbone],
                                    link_root))
    return '\n'.join(blocks).rstrip('\n') + '\n'


def _span(values, fmt) -> str:
    values = sorted(v for v in values if v is not None)
    if not values:
        return '-'
    low, high = fmt(values[0]), fmt(values[-1])
    return low if low == high else f'{low} - {high}'


def render_summary(index_path: str = osp.join(REPO, 'model-index.yml')) -> str:
    """One table with a row per collection and backbone: data set, entries, parameter range
    and the range of the first metric the authors report."""
    lines = ['| models | data | entries | params | authors\' results |',
             '|---|---|---:|---|---|']
    for _, collections, models in load_index(index_path):
        for col in collections:
            members = [m for m in models if m['In Collection'] == col['Name']]
            for backbone in OrderedDict.fromkeys(m['Metadata']['Backbone'] for m in members):
                group = [m for m in members if m['Metadata']['Backbone'] == backbone]
                metrics = OrderedDict()
                for m in group:
                    for result in m.get('Results') or []:
                        for name, value in result['Metrics'].items():
                            metrics.setdefault(name, []).append(value)
                if metrics:
                    name, values = next(iter(metrics.items()))
                    reported = f'{name} {_span(values, str)}'
                else:
                    reported = '-'
                params = _span([m['Metadata'].get('Parameters') for m in group], _millions)
                lines.append(f'| {title(col, backbone)} | {col["Metadata"]["Training Data"]} '
                             f'| {len(group)} | {params} | {reported} |')
    return '\n'.join(lines) + '\n'


def link_root_for(path: str) -> str:
    """The prefix that makes repository-relative links work from the file ``path``."""
    rel = osp.relpath(REPO, osp.dirname(osp.abspath(path)))
    return '' if rel == '.' else rel.replace(osp.sep, '/') + '/'


def update_section(path: str, text: str, start: str = START, end: str = END) -> bool:
    """Replaces the generated section of ``path``; returns whether the file changed."""
    with open(path) as f:
        content = f.read()
    if content.count(start) != 1 or content.count(end) != 1:
        raise SystemExit(f'{path} must hold exactly one {start} ... {end} pair; add them '
                         f'where the generated text belongs.')
    head, rest = content.split(start)
    _, tail = rest.split(end)
    new = f'{head}{start}\n{text}{end}{tail}'
    if new != content:
        with open(path, 'w') as f:
            f.write(new)
    return new != content


def generated_section(path: str, start: str = START, end: str = END) -> str:
    """The text between the markers of ``path`` (what ``--update`` wrote)."""
    with open(path) as f:
        content = f.read()
    return content.split(start, 1)[1].split(end, 1)[0].lstrip('\n')


def update(path: str) -> bool:
    """Rewrites whichever generated sections ``path`` holds (tables, summary)."""
    with open(path) as f:
        content = f.read()
    root = link_root_for(path)
    changed, found = False, False
    if START in content:
        changed |= update_section(path, render(link_root=root))
        found = True
    if SUMMARY_START in content:
        changed |= update_section(path, render_summary(), SUMMARY_START,
                                  SUMMARY_END)
        found = True
    if not found:
        raise SystemExit(f'{path} holds neither {START} nor {SUMMARY_START}; add the pair '
                         f'where the generated text belongs.')
    return changed


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--update', metavar='FILE', nargs='+',
                        help='rewrite the generated sections of these files '
                             '(docs/model_zoo.md: tables; README.md: summary)')
    parser.add_argument('--summary', action='store_true', help='print the summary table')
    args = parser.parse_args()
    if args.update:
        for path in args.update:
            changed = update(path)
            print(f'{path}: {"updated" if changed else "already up to date"}', file=sys.stderr)
    else:
        sys.stdout.write(render_summary() if args.summary else render())


if __name__ == '__main__':
    main()
