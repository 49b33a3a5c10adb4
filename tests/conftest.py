# The local stack's fixtures live in devstack/ (scaffolding, not the operator's code).
pytest_plugins = [
    "devstack.pytest_postgres",
    "devstack.pytest_kube",
    "devstack.pytest_s3",
    "devstack.pytest_operator",
    "devstack.pytest_secretsmanager",
    "devstack.pytest_argocd",
]
