"""Derives the compact test data (tests/data) from the authors' reference folder.

    python tools/dev/make_test_reference.py ../shared/reference            # rewrite tests/data
    python tools/dev/make_test_reference.py ../shared/reference --check    # compare, write nothing

The reference folder holds the weights, inputs and outputs of the authors' unmodified
EMOv2 / EMOv1 model files (~60 MB). What is kept, and why it suffices, is described in
tests/reference_data.py and tests/data/README.md. The derivation refuses to write anything
when the seeded recipe does not reproduce the authors' weights or inputs bit for bit.
"""
import argparse
import filecmp
import io
import json
import os
import os.path as osp
import sys
import tempfile

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tests'))
import reference_data as ref  # noqa: E402

#: state-dict manifests the tests use (``seg_hr_backbone``, an unused variant, is left out)
MANIFEST_KEYS = {'emov2': ('variant', 'note', 'classification', 'det_backbone', 'seg_backbone'),
                 'emov1': None}
STATE_DICT_VARIANTS = {'emov2': ('1M', '2M', '5M', '20M', '50M'),
                       'emov1': ('1M', '2M', '5M', '6M')}
COPIED = {'emov2': ('params_flops.json', 'flops_extra.json'),
          'emov1': ('params_flops.json', 'downstream_log_params.json')}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('reference', help='the authors\' reference folder (shared/reference)')
    parser.add_argument('--out', default=ref.DATA_DIR, help='output folder (tests/data)')
    parser.add_argument('--check', action='store_true',
                        help='derive into a temporary folder and compare with --out')
    return parser.parse_args()


def write_json(path: str, data, indent=None):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(data, f, indent=indent, separators=None if indent else (',', ':'))
        f.write('\n')


def load_json(path: str):
    with open(path) as f:
        return json.load(f)


def save_tensors(path: str, data):
    """torch.save through a buffer: the archive's record names then do not depend on the
    file name, so the same data gives the same bytes."""
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with open(path, 'wb') as f:
        f.write(buffer.getvalue())


def compact_downstream_logs(logs: dict) -> dict:
    """Each distinct backbone name -> shape list once; log entries refer to it by name."""
    backbones, names = {}, {}
    compact = {}
    for log, entry in sorted(logs.items()):
        entry = dict(entry)
        if 'backbone' in entry:
            key = json.dumps(entry['backbone'])
            if key not in names:
                count = entry['n_params_backbone']
                names[key] = f'backbone_{len(names)}_{count}'
                backbones[names[key]] = entry['backbone']
            entry['backbone'] = names[key]
        compact[log] = entry
    return dict(backbones=backbones, logs=compact)


def derive(reference: str, out: str):
    checksums = {}
    inputs = ref.reference_inputs()
    for family in ref.FAMILIES:
        src, dst = ref.family_dir(reference, family), ref.family_dir(out, family)
        prefix = ref.FAMILIES[family][1]
        for name in COPIED[family]:
            write_json(osp.join(dst, name), load_json(osp.join(src, name)), indent=1)
        for arch in STATE_DICT_VARIANTS[family]:
            manifest = load_json(osp.join(src, f'{prefix}_{arch}_state_dict.json'))
            keep = MANIFEST_KEYS[family] or manifest
            write_json(osp.join(dst, f'{prefix}_{arch}_state_dict.json'),
                       {k: manifest[k] for k in keep})
        for arch in ref.PARITY_VARIANTS:
            name = f'{prefix}_{arch}_random.pth'
            weights = torch.load(osp.join(src, name), weights_only=True)
            regenerated = ref.random_weights(load_json(
                osp.join(src, f'{prefix}_{arch}_state_dict.json'))['classification'])
            if ref.digest(regenerated) != ref.digest(weights):
                sys.exit(f'error: the seeded recipe does not reproduce {name}; store the '
                         'weights instead (see tests/reference_data.py).')
            checksums[name] = ref.digest(weights)
            outputs = torch.load(osp.join(src, f'{prefix}_{arch}_io.pth'), weights_only=True)
            for key, tensor in inputs.items():
                if not torch.equal(outputs[key], tensor):
                    sys.exit(f'error: the seeded recipe does not reproduce {key} of {arch}')
            compact = dict(cls_logits=outputs['cls_logits'].clone(), maps={})
            for key, tensor in outputs.items():
                if torch.is_tensor(tensor) and tensor.dim() == 4 and key not in inputs:
                    compact['maps'][key] = ref.compact_map(tensor)
            save_tensors(ref.outputs_path(family, arch, out), compact)
    write_json(osp.join(out, 'downstream_log_params.json'), compact_downstream_logs(
        load_json(osp.join(reference, 'downstream_log_params.json'))))
    checksums['inputs'] = {k: ref.digest({k: v}) for k, v in inputs.items()}
    write_json(osp.join(out, 'checksums.json'), checksums, indent=1)


def main():
    args = parse_args()
    if not osp.isfile(osp.join(args.reference, 'params_flops.json')):
        sys.exit(f'error: {args.reference} is not the authors\' reference folder '
                 '(no params_flops.json); pass the path of shared/reference.')
    if not args.check:
        derive(args.reference, args.out)
        print(f'wrote {args.out}')
        return
    with tempfile.TemporaryDirectory() as tmp:
        derive(args.reference, tmp)
        differ = []
        for root, _, files in os.walk(tmp):
            for name in files:
                new = osp.join(root, name)
                old = osp.join(args.out, osp.relpath(new, tmp))
                if not osp.isfile(old) or not filecmp.cmp(new, old, shallow=False):
                    differ.append(osp.relpath(new, tmp))
    if differ:
        sys.exit(f'error: {args.out} differs from the derivation in: {", ".join(differ)}')
    print(f'{args.out} is up to date')


if __name__ == '__main__':
    main()
