"""Local stack for tests and the demo: control plane, pod executor, PostgreSQL and S3.
Scaffolding, not part of the operator."""
