"""Builds k8sxray's optional C modules: ``k8sxray._native`` (the WSGI entry's unsampled path) and
``k8sxray.otlp._fast`` (segment documents to OTLP spans for the daemon's OTLP sink); the rest of
the package is pure Python and described in pyproject.toml. Without a C compiler the build goes
on without them, and k8sxray does the same work in Python."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("k8sxray._native", ["k8sxray/_native.c"], optional=True),
        Extension("k8sxray.otlp._fast", ["k8sxray/otlp/_fast.c"], optional=True),
    ]
)
