"""What runs inside the runner Jobs and the local `walwarden restore` (DESIGN §5: the Job side).

    contract.py  the Job contract both sides read: commands, flags, environment names, the error line
    errors.py    the runner's failures and their reasons
    backup.py    pg_dump streamed into S3 with a signed manifest
    restore.py   verified download, the go signal, pg_restore
    streams.py   full reads, checksums and progress over a stream

The runner shares only api/, storage/, security/, postgres and contract.py with the operator;
the operator side imports nothing of it but contract.py (checked by an import-linter contract).
"""
