"""The RestoreRequest workflow (DESIGN §3).

table.py        the step table: the one place to read the order, and what each step undoes
steps/          one module per step (Validate … Verify) and its undo; steps never import each other
run.py          RestoreRun: the typed request and status steps work on
source.py       the backup being restored, its manifest checked against the BackupRequest
target.py       the database restored into: admin Secret and name
dbinfo.py       the services' db-info secrets: backends, snapshot, repoint, put back, restarts
go_signal.py    the staged restore Job's go (and its calling off)
approvals.py    single-use approval tokens
artifact_urls.py  presigned URLs handed to runner Jobs in Secrets
job.py          the runner Jobs' manifests (pure builders)
"""
