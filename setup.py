"""Build of the optional C extensions; everything else is in pyproject.toml.

Both are optional: where no C compiler is at hand the install still succeeds and sa1b
uses the pure-Python way instead.

- ``sa1b_cli._rlestats`` makes ``sa1b verify --deep`` several times faster (without it
  the deep check uses pycocotools' decoder and numpy: ``sa1b_cli/rle.py``).
- ``sa1b_cli._hashlanes`` hashes the shards an export publishes side by side, one SIMD
  lane a shard, md5 and sha256 in one read (without it hashlib hashes each:
  ``sa1b_cli/integrity.py``).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("sa1b_cli._rlestats", ["sa1b_cli/_rlestats.c"], optional=True),
                   Extension("sa1b_cli._hashlanes", ["sa1b_cli/_hashlanes.c"], optional=True)])
