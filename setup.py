from setuptools import setup

# Metadata lives in pyproject.toml; this file only wires the cffi shim in.
setup(cffi_modules=["_native/build_shim.py:ffibuilder"])
