"""Builds k8sxray's optional C module (the WSGI entry's unsampled path); the rest of the
package is pure Python and described in pyproject.toml. Without a C compiler the build
goes on without it, and k8sxray serves every request in Python."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("k8sxray._native", ["k8sxray/_native.c"], optional=True)])
