"""``k8sxray-run``: trace an unmodified Python app (``python -m k8sxray.run <command...>``).

The launcher puts a bootstrap directory first on ``PYTHONPATH`` and replaces itself with
the command. Every Python process the command starts (gunicorn's, uvicorn's and uWSGI's workers
too) imports the bootstrap's ``sitecustomize``, which turns on the installed outgoing-call
integrations and wraps the web app where the server loads it. See ``docs/zero-code.md``.
"""
