"""Sampling: which requests are traced.

X-Ray's default rule (1 request a second, then 5%), a fixed rate, local rules from the
SDK's JSON file, or centralized rules polled through the daemon's TCP port.
Importing this package starts nothing; :func:`make_sampler` builds a sampler.
"""

from __future__ import annotations
