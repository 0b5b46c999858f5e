"""OpenTelemetry traces in and out of X-Ray's segment documents.

``model`` holds spans as plain Python structures; ``mapping`` turns spans into segment documents
and segment documents into spans (the one place where the mapping is written); ``codec`` reads
OTLP/HTTP payloads (protobuf, with the ``opentelemetry-proto`` package, or OTLP/JSON) into spans
and writes spans as an OTLP protobuf request. Only ``codec``'s protobuf reader needs the optional
package (``pip install 'k8sxray[otlp]'``); nothing here imports the daemon or the library.
"""

EXTRA_HINT = "pip install 'k8sxray[otlp]' (the opentelemetry-proto package)"
"""What to install for OTLP support, for error messages."""
