"""Small wrappers over the kubernetes client (an adapter: imports only api/ and settings):
api.py (clients, the one place API errors become decisions, conflict retries, owner references),
workloads.py (find, scale, restart services), jobs.py (runner Jobs and their outcome),
runner_job.py (a hardened runner Job manifest), secrets.py, leases.py (the namespace lock)."""
