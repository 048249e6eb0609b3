"""Build of the optional C extension; everything else is in pyproject.toml.

``sa1b_cli._rlestats`` makes ``sa1b verify --deep`` several times faster. It is
optional: where no C compiler is at hand the install still succeeds and the deep
check uses pycocotools' decoder and numpy instead (``sa1b_cli/rle.py``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sa1b_cli._rlestats", ["sa1b_cli/_rlestats.c"], optional=True)])
