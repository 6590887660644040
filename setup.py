"""emo_mm: EMOv2 / EMOv1 backbones for the OpenMMLab 2.x toolboxes.

The OpenMMLab stack is pinned in requirements/ and installed by ``make setup``
(tools/setup_env.sh), which also builds mmcv with compiled ops; ``install_requires``
only lists what emo_mm imports directly, with ranges the pins satisfy.
"""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def version() -> str:
    with open(osp.join(HERE, 'emo_mm', '__init__.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def readme() -> str:
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


setup(
    name='emo_mm',
    version=version(),
    description='EMOv2 (i2RMB) and EMOv1 (iRMB) backbones as an OpenMMLab 2.x plugin',
    long_description=readme(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['emo_mm', 'emo_mm.*']),
    include_package_data=True,
    install_requires=[
        'torch>=2.1',
        'mmengine>=0.10.4,<0.11',
        'mmcv>=2.0.0,<2.2.0',
        'numpy',
    ],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],
        'cls': ['mmpretrain==1.2.0'],
        'video': ['mmaction2==1.2.0', 'decord', 'av'],
    },
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False,
)
