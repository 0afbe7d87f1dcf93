"""gRPC control, health and metrics (issue 12)."""
