"""The restore's steps, one module each (their order is restore/table.py's). A step module uses
the restore's services (run, source, target, dbinfo, go_signal, approvals, artifact_urls) and the
workflow's, never another step module."""
