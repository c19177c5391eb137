"""The one compiled part of rtproxy: the audio unpacking (rtproxy/io/_audiofast.c).

Optional: where it cannot be built (no C compiler), the install still
succeeds and rtproxy.io.audiocodec unpacks with NumPy, the same bytes slower.
Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("rtproxy.io._audiofast", ["rtproxy/io/_audiofast.c"], optional=True,
                             extra_compile_args=["-O3"])])
