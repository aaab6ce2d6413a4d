"""amp-exporter: Prometheus exporter for the Cisco Secure Endpoint Linux connector."""

__version__ = "0.1.0"
