"""Put first on the test apps' ``PYTHONPATH`` (after k8sxray-run's bootstrap, which runs it first).

It only names the logger on the lines of logging's last-resort handler, the one an app that
configures no logging uses: ``WARNING k8sxray.run._boot: ...``. The tests can then tell
k8sxray's log records from anything else on stderr (uWSGI prints its working directory,
which may well be a folder named ``k8sxray``).
"""

import logging

if logging.lastResort is not None:
    logging.lastResort.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
