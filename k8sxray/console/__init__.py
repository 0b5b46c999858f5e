"""The local X-Ray console: a store of traces, X-Ray's filter grammar, the service graph and X-Ray's API."""
