"""``python -m k8sxray.daemon``: a drop-in replacement for the AWS X-Ray daemon.

It receives segment documents over UDP, buffers them within a memory bound, and ships them in
batches to X-Ray (or another sink). Importing this package has no side effects; see
:mod:`k8sxray.daemon.server` for the program itself.
"""

from __future__ import annotations
