"""What the service tells its operators: JSON logs with request ids, Prometheus metrics and
OpenTelemetry traces."""
